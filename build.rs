//! The web pages under `web/` are embedded in the binary (`src/api/pages.rs`); the macro that
//! embeds them cannot tell cargo to watch them on stable Rust, so this does: a changed page
//! rebuilds the crate instead of serving the old one.
fn main() {
    println!("cargo:rerun-if-changed=web");
    println!("cargo:rerun-if-changed=build.rs");
}
