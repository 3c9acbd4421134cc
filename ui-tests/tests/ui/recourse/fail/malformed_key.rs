use recourse::recourse;

#[recourse(policy = "users/get user")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
