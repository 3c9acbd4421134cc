use recourse::recourse;

#[recourse(policy = "users.Get", classifier = "billng")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
