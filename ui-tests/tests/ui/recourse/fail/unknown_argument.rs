use recourse::recourse;

#[recourse(policy = "users.Get", retries = 3)]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
