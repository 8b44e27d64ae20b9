//! Embeds every `migrations/NNNN_name.sql` file: writes the list `src/migrate.rs` includes, in version order, so
//! adding a migration is adding its file. A file not named `NNNN_name.sql`, or two files with one version, fail
//! the build with the file named.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut found: Vec<(i64, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("migrations/ exists") {
        let name = entry.expect("readable migrations/").file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        let version = name
            .split_once('_')
            .and_then(|(v, _)| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("migrations/{name}: a migration is named NNNN_name.sql"));
        if let Some((_, other)) = found.iter().find(|(v, _)| *v == version) {
            panic!("migrations/{name} and migrations/{other} have the same version {version}");
        }
        found.push((version, name));
    }
    found.sort();
    let mut out = String::from("&[\n");
    for (version, name) in &found {
        let path = dir.join(name);
        let _ = writeln!(
            out,
            "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        );
    }
    out.push_str("]\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(dest, out).expect("write the migration list");
}
