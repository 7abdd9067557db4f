//! `tw-fake-k8s OBJECTS.json ADDR`: the fake Kubernetes API server (`fake_k8s`) on `ADDR`,
//! serving the objects of the file (`{"pods": [...], "services": [...], ...}`, each in the
//! API's JSON) to list and watch, for the end-to-end tests that run an agent in a network
//! namespace. Prints `ready URL` once it listens.

use tapwire_integration::fake_k8s::FakeApi;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(addr)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tw-fake-k8s OBJECTS.json ADDR");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("tw-fake-k8s: {file}: {e}");
        std::process::exit(2);
    });
    let objects: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| {
            eprintln!("tw-fake-k8s: {file}: {e}");
            std::process::exit(2);
        });
    let api = FakeApi::default();
    for (kind, list) in objects {
        for o in list.as_array().cloned().unwrap_or_default() {
            api.put(&kind, o);
        }
    }
    let url = api.serve_at(addr).await;
    println!("ready {url}");
    std::future::pending::<()>().await;
}
