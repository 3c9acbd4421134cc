mod sdk {
    pub use recourse as resilience;
}

use sdk::resilience;

#[resilience::recourse(policy = "users.Get", crate = "sdk::resilience")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(runtime.block_on(get_user(3)).unwrap(), 3);
}
