use recourse::recourse;

struct Request {
    id: u64,
}

#[recourse(policy = "users.Get")]
async fn get_user(request: Request) -> Result<u64, std::io::Error> {
    Ok(request.id)
}

fn main() {}
