use recourse::recourse;

// Every bad argument is reported at once, and a `policy` after them is
// still read (no "missing `policy`").
#[recourse(retries = 3, clasifier = "billing", timeout(2), policy = "users.Get")]
async fn get_user(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
