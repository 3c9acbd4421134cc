#![deny(warnings, clippy::pedantic, unused_qualifications, dead_code)]

use recourse::recourse;

/// Documented so `missing_docs`-style lints have nothing to say.
#[recourse(policy = "users.Get")]
pub async fn get_user(id: u64, name: String, tags: Vec<String>) -> Result<String, std::io::Error> {
    Ok(format!("{id}{name}{}", tags.len()))
}

/// The sequential (`&mut`) form.
#[recourse(policy = "users.Update")]
pub async fn append(buffer: &mut Vec<u8>, byte: u8) -> Result<usize, std::io::Error> {
    buffer.push(byte);
    Ok(buffer.len())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(runtime.block_on(get_user(1, "a".to_owned(), vec![])).unwrap(), "1a0");
    let mut buffer = Vec::new();
    assert_eq!(runtime.block_on(append(&mut buffer, 7)).unwrap(), 1);
}
