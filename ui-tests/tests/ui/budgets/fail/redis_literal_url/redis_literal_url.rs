use recourse::recourse;

#[recourse(policy = "api.Get")]
async fn get(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
