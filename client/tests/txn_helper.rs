//! The retrying transaction helper against a real one-member cluster:
//! concurrent read-modify-write transfers between accounts keep the total
//! constant (conflicting attempts are retried, none is lost or applied
//! twice), a closure error rolls back without writing, and `view` reads a
//! consistent snapshot.

use sett_client::{Transactions, TxnError};
use sett_server::testing::{runtime, SingleMember};

const ACCOUNTS: usize = 5;
const WORKERS: usize = 4;
const TRANSFERS: usize = 30;
const INITIAL: i64 = 100;

fn account(i: usize) -> String {
    format!("acct/{i}")
}

fn number(v: Option<bytes::Bytes>) -> i64 {
    v.map_or(0, |b| std::str::from_utf8(&b).unwrap().parse().unwrap())
}

#[test]
fn transfers_keep_the_total_and_errors_roll_back() {
    let rt = runtime();
    rt.block_on(async {
        let one = SingleMember::start().await.unwrap();
        let txns = Transactions::new(one.channel().await);
        txns.update(|tx| async move {
            for i in 0..ACCOUNTS {
                tx.put(account(i), INITIAL.to_string());
            }
            Ok(())
        })
        .await
        .unwrap();

        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let txns = txns.clone();
            tasks.push(tokio::spawn(async move {
                let mut attempts = 0usize;
                for n in 0..TRANSFERS {
                    let (from, to) = (
                        account((w + n) % ACCOUNTS),
                        account((w + 2 * n + 1) % ACCOUNTS),
                    );
                    if from == to {
                        continue;
                    }
                    let amount = (n as i64 % 7) + 1;
                    txns.update(|tx| {
                        attempts += 1;
                        let (from, to) = (from.clone(), to.clone());
                        async move {
                            let a = number(tx.get(from.clone()).await?);
                            let b = number(tx.get(to.clone()).await?);
                            tx.put(from, (a - amount).to_string());
                            tx.put(to, (b + amount).to_string());
                            Ok(())
                        }
                    })
                    .await
                    .unwrap();
                }
                attempts
            }));
        }
        let mut attempts = 0;
        for t in tasks {
            attempts += t.await.unwrap();
        }
        let total = txns
            .view(|tx| async move {
                let mut sum = 0;
                for kv in tx.range("acct/", "acct0", 0).await? {
                    sum += number(Some(kv.value));
                }
                Ok(sum)
            })
            .await
            .unwrap();
        assert_eq!(
            total,
            INITIAL * ACCOUNTS as i64,
            "after {attempts} attempts"
        );

        // An error from the closure: nothing is written.
        let err = txns
            .update(|tx| async move {
                tx.put(account(0), "0");
                Err::<(), _>(TxnError::Aborted("changed my mind".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, TxnError::Aborted(_)));
        let a0 = txns
            .view(|tx| async move { Ok(number(tx.get(account(0)).await?)) })
            .await
            .unwrap();
        assert_ne!(a0, 0);

        // A range delete hides the keys in it from later reads, and a
        // closure error leaves everything as it was.
        let err = txns
            .update(|tx| async move {
                tx.delete_range("acct/", "acct0");
                assert_eq!(tx.get(account(1)).await?, None);
                Err::<(), _>(TxnError::Aborted("only looking".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, TxnError::Aborted(_)));

        // Reads see the transaction's own writes.
        let seen = txns
            .update(|tx| async move {
                tx.put("own", "1");
                Ok(number(tx.get("own").await?))
            })
            .await
            .unwrap();
        assert_eq!(seen, 1);

        one.node.shutdown().await.unwrap();
    });
}
