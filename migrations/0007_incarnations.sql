-- The incarnations of each JetStream stream this daemon has read. A stream deleted and created again (a wiped
-- store, a move to another cluster) numbers its messages from 1 again: the identity of a message is its stream's
-- incarnation and its sequence, so a new message is never mistaken for an old one. The first incarnation seen of
-- a stream (epoch 0) keeps the identity of earlier versions (the bare stream name), so rows written before the
-- upgrade still match their redeliveries; later ones are `<stream>.<epoch>` ('.' never occurs in a stream name).
CREATE TABLE IF NOT EXISTS @schema@.db_event_writer_incarnations (
  jetstream  TEXT        NOT NULL,
  created_ns BIGINT      NOT NULL,
  epoch      INTEGER     NOT NULL,
  first_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (jetstream, created_ns),
  UNIQUE (jetstream, epoch)
);
