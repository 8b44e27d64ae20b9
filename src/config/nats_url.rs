//! Credentials in `nats.url`. async-nats ignores a URL's user info, so the daemon takes it out of every URL of the
//! list and authenticates with it: `user:password@` as user and password, `token@` as a token. The user info runs
//! to the **last** `@`, so a password may hold `/`, `?`, `#` or `@` unencoded; percent-escapes are decoded (a
//! literal `%` is written `%25`, as in a PostgreSQL URL). The URLs handed to the client carry no secret.
//!
//! Uses [`crate::redact`] (URL lists, percent decoding) and the config types.

use super::secret::Secret;
use super::types::NatsAuth;
use crate::redact::{percent_decode, split_urls};

/// `url` without credentials, and the authentication to use: the URL's credentials, or `auth` when it has none.
/// Refused: URLs of one list carrying different credentials (one set is sent to every server), and credentials
/// in the URL as well as a `[nats]` way to authenticate.
pub fn take_credentials(url: &str, auth: &NatsAuth) -> Result<(String, NatsAuth), String> {
    let mut bare = Vec::new();
    let mut found: Option<(Option<String>, String)> = None;
    for one in split_urls(url) {
        let one = one.trim();
        let Some((scheme, rest)) = one.split_once("://") else {
            bare.push(one.to_owned());
            continue;
        };
        let Some(at) = rest.rfind('@') else {
            bare.push(one.to_owned());
            continue;
        };
        let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_owned());
        let userinfo = &rest[..at];
        let credentials = match userinfo.split_once(':') {
            Some((user, password)) => (Some(decode(user)), decode(password)),
            None => (None, decode(userinfo)),
        };
        if credentials.1.is_empty() {
            return Err("a URL's user info is empty (write `user:password@` or `token@`, or nothing)".to_owned());
        }
        match &found {
            Some(earlier) if *earlier != credentials => {
                return Err("the URLs carry different credentials; one set is sent to every server".to_owned());
            }
            _ => found = Some(credentials),
        }
        bare.push(format!("{scheme}://{}", &rest[at + 1..]));
    }
    let bare = bare.join(",");
    servers(&bare)?;
    match (found, auth) {
        (None, auth) => Ok((bare, auth.clone())),
        (Some(_), auth) if *auth != NatsAuth::None => {
            Err("credentials in the URL and a [nats] way to authenticate: choose one".to_owned())
        }
        (Some((Some(user), password)), _) => {
            Ok((bare, NatsAuth::UserPassword { user, password: Secret::Value(password) }))
        }
        (Some((None, token)), _) => Ok((bare, NatsAuth::Token(Secret::Value(token)))),
    }
}

/// The servers of a URL list without credentials, as the client connects to them (async-nats takes one URL per
/// string, so the list is split here). A host without a scheme is `nats://`; the error names the URL that is
/// not a NATS server address (a scheme other than nats, tls, ws, wss; no host; a bad port).
pub fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    // Host:port entries without a scheme cannot hold a password: their list splits at every comma.
    let list: Vec<&str> = if url.contains("://") { split_urls(url) } else { url.split(',').collect() };
    let list: Vec<&str> = list.into_iter().map(str::trim).collect();
    if list.iter().all(|u| u.is_empty()) {
        return Err("no NATS server URL is given".to_owned());
    }
    list.into_iter()
        .map(|one| {
            let addr: async_nats::ServerAddr = one.parse().map_err(|e| format!("{one:?}: {e}"))?;
            if addr.host().is_empty() {
                return Err(format!("{one:?} names no host"));
            }
            Ok(addr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_password(user: &str, password: &str) -> NatsAuth {
        NatsAuth::UserPassword { user: user.to_owned(), password: Secret::Value(password.to_owned()) }
    }

    #[test]
    fn a_list_is_split_into_servers_and_a_non_nats_url_is_named() {
        let hosts = |url: &str| -> Vec<(String, u16)> {
            servers(url).unwrap().iter().map(|a| (a.host().to_owned(), a.port())).collect()
        };
        assert_eq!(hosts("nats://127.0.0.1:4222, tls://h2:1"), [("127.0.0.1".into(), 4222), ("h2".into(), 1)]);
        assert_eq!(hosts("h1:1, h2"), [("h1".into(), 1), ("h2".into(), 4222)]);
        assert!(servers("htp://nowhere").unwrap_err().contains("\"htp://nowhere\": invalid scheme"));
        assert!(servers("nats://h:99999").unwrap_err().contains("nats://h:99999"));
        assert!(servers("").is_err());
        assert!(take_credentials("nats://u:p@h:1,htp://x", &NatsAuth::None).is_err());
    }

    #[test]
    fn credentials_leave_the_urls_and_become_the_authentication() {
        let none = NatsAuth::None;
        assert_eq!(
            take_credentials("nats://u:S3cr/et?x@127.0.0.1:4222", &none).unwrap(),
            ("nats://127.0.0.1:4222".to_owned(), user_password("u", "S3cr/et?x"))
        );
        assert_eq!(
            take_credentials("nats://u:p%40ss%25@h:1,nats://u:p%40ss%25@h2:2", &none).unwrap(),
            ("nats://h:1,nats://h2:2".to_owned(), user_password("u", "p@ss%"))
        );
        assert_eq!(
            take_credentials("tls://t0ken@h:1,tls://h2:2", &none).unwrap(),
            ("tls://h:1,tls://h2:2".to_owned(), NatsAuth::Token(Secret::Value("t0ken".to_owned())))
        );
        assert_eq!(take_credentials("nats://h:1", &none).unwrap(), ("nats://h:1".to_owned(), NatsAuth::None));
        let token = NatsAuth::Token(Secret::File("/run/t".into()));
        assert_eq!(take_credentials("nats://h:1", &token).unwrap().1, token);
    }

    #[test]
    fn conflicting_credentials_are_refused() {
        let e = take_credentials("nats://a:one1@h1,nats://b:two2@h2", &NatsAuth::None).unwrap_err();
        assert!(e.contains("different credentials"), "{e}");
        let token = NatsAuth::Token(Secret::Value("t0ken".into()));
        let e = take_credentials("nats://a:one1@h1", &token).unwrap_err();
        assert!(e.contains("choose one"), "{e}");
        assert!(take_credentials("nats://@h1", &NatsAuth::None).is_err());
    }
}
