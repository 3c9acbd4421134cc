use recourse::recourse;

#[recourse(policy = "users.Get")]
async fn lengths(words: &[&str], scale: impl Fn(usize) -> usize + Clone) -> Result<impl Iterator<Item = usize>, std::io::Error> {
    let lengths: Vec<usize> = words.iter().map(|w| scale(w.len())).collect();
    Ok(lengths.into_iter())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let total: usize = runtime.block_on(lengths(&["a", "bcd"], |n| n * 2)).unwrap().sum();
    assert_eq!(total, 8);
}
