//! Moves an amount between two keys in an interactive serializable
//! transaction, retried on conflict:
//!
//! ```text
//! cargo run -p sett-client --example transfer -- http://127.0.0.1:2379 alice bob 10
//! ```
//!
//! Missing keys count as 0; the new balances are printed.

use sett_client::{Transactions, TxnError};

fn number(v: Option<bytes::Bytes>) -> Result<i64, TxnError> {
    match v {
        None => Ok(0),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TxnError::Aborted(format!("not a number: {b:?}"))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, from, to, amount] = args.as_slice() else {
        return Err("usage: transfer ENDPOINT FROM TO AMOUNT".into());
    };
    let amount: i64 = amount.parse()?;
    let txns = Transactions::new(sett_client::connect(std::slice::from_ref(endpoint)).await?);
    let (a, b) = txns
        .update(|tx| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                let a = number(tx.get(from.clone()).await?)? - amount;
                let b = number(tx.get(to.clone()).await?)? + amount;
                tx.put(from, a.to_string());
                tx.put(to, b.to_string());
                Ok((a, b))
            }
        })
        .await?;
    println!("{from} = {a}, {to} = {b}");
    Ok(())
}
