// Local items named like the paths generated code uses must not change its
// meaning: the expansion names only `::recourse::__private` and `::core`.
mod shadowed {
    #![allow(dead_code)]

    mod core {}
    mod recourse {}
    struct Option;
    struct Result;
    struct Duration;

    #[::recourse::recourse(policy = "users.Get")]
    pub(crate) async fn get_user(id: u64) -> ::core::result::Result<u64, std::io::Error> {
        let __recourse_ret = id;
        let __recourse_call = 1;
        Ok(__recourse_ret + __recourse_call - 1)
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(runtime.block_on(shadowed::get_user(5)).unwrap(), 5);
}
