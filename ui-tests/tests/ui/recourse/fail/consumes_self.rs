use recourse::recourse;

struct Client;

impl Client {
    #[recourse(policy = "users.Get")]
    async fn into_user(self, id: u64) -> Result<u64, std::io::Error> {
        Ok(id)
    }
}

fn main() {}
