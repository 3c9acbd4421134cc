use recourse::recourse;

#[derive(Clone)]
struct Point {
    x: i64,
    y: i64,
}

// Pattern parameters are bound to hidden names and destructured afresh for
// every attempt (by-value ones from a clone).
#[recourse(policy = "users.Get")]
async fn manhattan((a, b): (i64, i64), Point { x, y }: Point, &(dx, dy): &(i64, i64)) -> Result<i64, std::io::Error> {
    Ok((a - x).abs() + (b - y).abs() + dx + dy)
}

#[recourse(policy = "users.Get")]
async fn count_down(mut n: u32) -> Result<u32, std::io::Error> {
    // `mut` on a by-value argument applies to each attempt's own copy.
    while n > 0 {
        n -= 1;
    }
    Ok(n)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(runtime.block_on(manhattan((1, 2), Point { x: 4, y: 6 }, &(1, 1))).unwrap(), 9);
    assert_eq!(runtime.block_on(count_down(3)).unwrap(), 0);
}
