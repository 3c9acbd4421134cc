use recourse::recourse;

struct Counter {
    seen: u32,
}

impl Counter {
    // `&mut self` retries one attempt after another (never hedged).
    #[recourse(policy = "users.Update")]
    async fn bump(&mut self, by: u32) -> Result<u32, std::io::Error> {
        self.seen += by;
        if self.seen < 3 { Err(std::io::ErrorKind::ConnectionReset.into()) } else { Ok(self.seen) }
    }
}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut counter = Counter { seen: 0 };
    let future = counter.bump(1);
    assert_send(&future);
    assert_eq!(runtime.block_on(future).unwrap(), 3);
}
