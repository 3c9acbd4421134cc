use recourse::recourse;

#[recourse(policy = "users.Get")]
async fn get_user(id: u64) -> u64 {
    id
}

#[recourse(policy = "users.Get")]
async fn log_user(id: u64) {
    let _ = id;
}

fn main() {}
