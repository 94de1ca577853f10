//! Rebuild `shared` when a migration is added: `embed_migrations!` only
//! tracks the files that existed at the last compile.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
