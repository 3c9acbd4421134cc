use recourse::Classifier;

#[derive(Classifier)]
#[classify(default = non_retryable)]
union Bits {
    int: u32,
    float: f32,
}

fn assert_classify<T: recourse::Classify>() {}

fn main() {
    // The fallback impl keeps this line free of secondary errors.
    assert_classify::<Bits>();
}
