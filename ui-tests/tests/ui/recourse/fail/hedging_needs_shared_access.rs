use recourse::recourse;

struct Index {
    hits: u64,
}

impl Index {
    #[recourse(policy = "search.Query")]
    async fn query(&mut self, term: &str) -> Result<usize, std::io::Error> {
        self.hits += 1;
        Ok(term.len())
    }
}

fn main() {}
