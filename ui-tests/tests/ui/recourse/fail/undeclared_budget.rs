use recourse::recourse;

#[recourse(policy = "ui.UndeclaredBudget")]
async fn call(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
