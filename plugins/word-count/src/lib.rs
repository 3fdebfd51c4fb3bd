//! Word count, Pulsar Functions' classic: every word of a line adds one to its counter in the
//! function's state, and the function emits the line's words with their totals so far.
//!
//! Input:  `the cat and the hat`
//! Output: `{"and":1,"cat":1,"hat":1,"the":2}` (after that one line)

use std::collections::BTreeMap;

use pfn_abi::{Context, ContextError, Json};

/// The words of a line: runs of letters, digits and apostrophes, in lower case.
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|word| !word.is_empty()).map(str::to_lowercase)
}

/// Counts the line's words; a blank line is filtered out.
#[pfn_abi::function]
pub fn word_count(ctx: &Context<'_>, line: &str) -> Result<Option<Json<BTreeMap<String, i64>>>, ContextError> {
    let mut totals = BTreeMap::new();
    for word in words(line) {
        let total = ctx.incr_counter(&word, 1)?;
        totals.insert(word, total);
    }
    Ok((!totals.is_empty()).then_some(Json(totals)))
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn splits_on_anything_but_letters_digits_and_apostrophes() {
        let found: Vec<String> = words("It's 2 o'clock, the CAT -- sat!").collect();
        assert_eq!(found, ["it's", "2", "o'clock", "the", "cat", "sat"]);
    }
}
