use recourse::recourse;

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("bad number: {0}")]
    Parse(#[from] std::num::ParseIntError),
    #[error("zero is not a user")]
    Zero,
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

impl recourse::Classify for ApiError {
    fn classify(&self) -> Option<recourse::Outcome> {
        Some(recourse::Outcome::non_retryable())
    }
}

#[recourse(policy = "users.Get")]
async fn parse_user(text: &str) -> Result<u64, ApiError> {
    let id: u64 = text.trim().parse()?;
    if id == 0 {
        return Err(ApiError::Zero);
    }
    Ok(id)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(runtime.block_on(parse_user(" 42 ")).unwrap(), 42);
    assert!(matches!(runtime.block_on(parse_user("0")), Err(ApiError::Zero)));
    assert!(matches!(runtime.block_on(parse_user("x")), Err(ApiError::Parse(_))));
}
