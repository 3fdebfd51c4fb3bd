use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use super::*;

fn store_in(dir: &tempfile::TempDir) -> StateStore {
    StateStore::open(&dir.path().join("state.redb")).expect("open the store")
}

fn commit(slot: &StateSlot) {
    let (sender, receiver) = std::sync::mpsc::channel();
    slot.commit_batch(|| {
        Box::new(move |result| {
            let _ = sender.send(result);
        })
    });
    if let Ok(result) = receiver.recv() {
        result.expect("the batch is durable");
    }
}

#[test]
fn a_call_reads_its_own_writes_and_a_failed_call_leaves_none() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_in(&dir);
    let slot = StateSlot::new(store.function("t/n/f"));
    slot.put("colour", b"red").expect("put");
    assert_eq!(slot.incr("hits", 2).expect("incr"), 2);
    assert_eq!(slot.get("colour").expect("get"), Some(b"red".to_vec()));
    assert_eq!(slot.incr("hits", 3).expect("incr"), 5);
    slot.end_call(true);
    slot.put("colour", b"blue").expect("put");
    assert_eq!(slot.incr("hits", 100).expect("incr"), 105);
    slot.end_call(false);
    assert_eq!(slot.get("colour").expect("get"), Some(b"red".to_vec()));
    assert_eq!(slot.get_counter("hits").expect("counter"), 5);
    commit(&slot);
    let other = StateSlot::new(store.function("t/n/other"));
    assert_eq!(other.get("colour").expect("get"), None, "functions do not share keys");
    assert!(matches!(slot.get_counter("colour"), Err(StateError::NotACounter { .. })));
    assert!(matches!(slot.put("", b"x"), Err(StateError::KeyLength { len: 0 })));
}

#[test]
fn what_was_committed_is_there_after_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let store = store_in(&dir);
        let slot = StateSlot::new(store.function("t/n/f"));
        slot.put("a", b"1").expect("put");
        slot.incr("n", 41).expect("incr");
        slot.end_call(true);
        commit(&slot);
        slot.incr("n", 1).expect("incr");
        slot.end_call(true);
        // Staged only: dropping the store flushes it.
        slot.commit_batch(|| Box::new(|_| {}));
    }
    let store = store_in(&dir);
    let slot = StateSlot::new(store.function("t/n/f"));
    assert_eq!(slot.get("a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(slot.get_counter("n").expect("counter"), 42);
}

#[test]
fn counters_stay_exact_across_instances_with_failing_calls_mixed_in() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_in(&dir);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let slot = StateSlot::new(store.function("t/n/f"));
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let seen = slot.get_counter("count").expect("counter");
                assert!(seen >= last, "the counter went back from {last} to {seen}");
                last = seen;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let slot = StateSlot::new(store.function("t/n/f"));
            thread::spawn(move || {
                for call in 0..5_000 {
                    slot.incr("count", 1).expect("incr");
                    let fails = call % 10 == 9;
                    if fails {
                        slot.incr("count", 1_000).expect("incr");
                    }
                    slot.end_call(!fails);
                    if call % 64 == 63 {
                        commit(&slot);
                    }
                }
                commit(&slot);
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    done.store(true, Ordering::Release);
    reader.join().expect("reader");
    let slot = StateSlot::new(store.function("t/n/f"));
    assert_eq!(slot.get_counter("count").expect("counter"), 4 * 4_500);
}

#[test]
fn keys_are_listed_in_pages_and_deleted_by_prefix_across_layers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_in(&dir);
    let slot = StateSlot::new(store.function("t/n/f"));
    for number in 0..25 {
        slot.put(&format!("user/{number:02}"), b"x").expect("put");
    }
    slot.put("other", b"y").expect("put");
    slot.end_call(true);
    commit(&slot);
    // Newer writes in the batch and the call, over the file.
    slot.delete("user/03").expect("delete");
    slot.put("user/30", b"z").expect("put");
    slot.end_call(true);
    slot.incr("user/31", 1).expect("incr");

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = slot.list("user/", after.as_deref(), 10).expect("list");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().cloned();
        listed.extend(page);
    }
    let mut expected: Vec<String> = (0..25).filter(|n| *n != 3).map(|n| format!("user/{n:02}")).collect();
    expected.extend(["user/30".to_owned(), "user/31".to_owned()]);
    assert_eq!(listed, expected);

    slot.delete_prefix("user/1").expect("deleted");
    let page = slot.list("user/", None, 100).expect("list");
    assert!(!page.iter().any(|key| key.starts_with("user/1")), "{page:?}");
    assert_eq!(page.len(), expected.len() - 10);
    slot.end_call(true);
    commit(&slot);
    slot.put("user/15", b"back").expect("put");
    slot.end_call(true);
    commit(&slot);
    drop(slot);
    drop(store);

    let store = store_in(&dir);
    let slot = StateSlot::new(store.function("t/n/f"));
    let page = slot.list("user/1", None, 100).expect("list");
    assert_eq!(page, ["user/15"]);
    assert_eq!(slot.list("", None, 100).expect("list").len(), expected.len() - 10 + 1 + 1);
}
