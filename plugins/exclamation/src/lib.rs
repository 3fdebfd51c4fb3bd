//! Appends "!" to every message.

/// The function: `hello` becomes `hello!`.
#[pfn_abi::function]
pub fn exclamation(input: &str) -> String {
    let mut output = String::with_capacity(input.len() + 1);
    output.push_str(input);
    output.push('!');
    output
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_an_exclamation_mark() {
        assert_eq!(super::exclamation("hello"), "hello!");
    }
}
