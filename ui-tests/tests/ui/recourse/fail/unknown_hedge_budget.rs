use recourse::recourse;

#[recourse(policy = "ui.MisspelledHedgeBudget")]
async fn call(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
