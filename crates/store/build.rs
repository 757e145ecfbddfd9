// `sqlx::migrate!` embeds the migrations at compile time, but cargo does not know that a
// new file in the folder changes the crate: without this, a migration added since the
// last build is silently left out of the binary.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
