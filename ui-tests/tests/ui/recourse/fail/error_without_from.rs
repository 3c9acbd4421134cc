use recourse::recourse;

#[derive(Debug)]
enum ApiError {
    NotFound,
}

impl recourse::Classify for ApiError {}

#[recourse(policy = "users.Get")]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    if id == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(id)
}

fn main() {}
