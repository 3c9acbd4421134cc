use recourse::recourse;

trait Users {
    async fn name(&self, id: u64) -> Result<String, std::io::Error>;
}

struct Directory {
    prefix: String,
}

impl Users for Directory {
    #[recourse(policy = "users.Get")]
    async fn name(&self, id: u64) -> Result<String, std::io::Error> {
        Ok(format!("{}{id}", self.prefix))
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let directory = Directory { prefix: "user-".to_owned() };
    assert_eq!(runtime.block_on(directory.name(7)).unwrap(), "user-7");
}
