//! A1 notation as Sheets reads it: `Sheet1!A1:D`, `'Loyalty Export'!A:F`, a bare tab name
//! for the whole tab, open-ended ranges; and ranges written back the way Sheets echoes them.

/// A parsed A1 range: 0-based columns and rows, ends inclusive and open when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct A1 {
    pub sheet: Option<String>,
    pub start_col: usize,
    pub start_row: usize,
    pub end_col: Option<usize>,
    pub end_row: Option<usize>,
}

fn column_index(letters: &str) -> Option<usize> {
    if letters.is_empty() || letters.len() > 3 || !letters.chars().all(|c| c.is_ascii_alphabetic())
    {
        return None;
    }
    Some(
        letters
            .to_ascii_uppercase()
            .bytes()
            .fold(0usize, |n, b| n * 26 + usize::from(b - b'A' + 1))
            - 1,
    )
}

pub(super) fn column_letters(mut index: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(char::from(b'A' + (index % 26) as u8));
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.iter().rev().collect()
}

/// One cell reference (`B3`, `B`, `3`): its column and row, where given.
fn cell(reference: &str) -> Option<(Option<usize>, Option<usize>)> {
    let split = reference
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(reference.len());
    let (letters, digits) = reference.split_at(split);
    let col = if letters.is_empty() {
        None
    } else {
        Some(column_index(letters)?)
    };
    let row = if digits.is_empty() {
        None
    } else {
        Some(digits.parse::<usize>().ok().filter(|r| *r >= 1)? - 1)
    };
    (col.is_some() || row.is_some()).then_some((col, row))
}

/// Parses an A1 range; a bare name is a whole sheet when `is_sheet` knows it (as Google
/// resolves `Sheet1` to the tab, not to column SHEET, row 1).
pub(super) fn parse_a1(range: &str, is_sheet: impl Fn(&str) -> bool) -> Option<A1> {
    let bare = range.trim_matches('\'').replace("''", "'");
    let (sheet, cells) = match range.rsplit_once('!') {
        Some((sheet, cells)) => (
            Some(sheet.trim_matches('\'').replace("''", "'")),
            Some(cells),
        ),
        None if is_sheet(&bare) => (Some(bare), None),
        None if cell(range.split(':').next().unwrap_or("")).is_some() => (None, Some(range)),
        None => (Some(bare), None),
    };
    let Some(cells) = cells else {
        return Some(A1 {
            sheet,
            start_col: 0,
            start_row: 0,
            end_col: None,
            end_row: None,
        });
    };
    let (from, to) = match cells.split_once(':') {
        Some((from, to)) => (cell(from)?, Some(cell(to)?)),
        None => (cell(cells)?, None),
    };
    Some(A1 {
        sheet,
        start_col: from.0.unwrap_or(0),
        start_row: from.1.unwrap_or(0),
        end_col: to.and_then(|t| t.0),
        end_row: to.and_then(|t| t.1),
    })
}

pub(super) fn a1_text(
    title: &str,
    from_col: usize,
    from_row: usize,
    to_col: usize,
    to_row: usize,
) -> String {
    let quoted = if title.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        title.to_string()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    };
    format!(
        "{quoted}!{}{}:{}{}",
        column_letters(from_col),
        from_row + 1,
        column_letters(to_col),
        to_row + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_ranges_parse_with_quotes_open_ends_and_bare_sheet_names() {
        let tabs = |name: &str| ["Sheet1", "Weekly"].contains(&name);
        let parse = |r: &str| parse_a1(r, tabs);
        assert_eq!(
            parse("Sheet1!A1:D").map(|a| (a.start_col, a.start_row, a.end_col, a.end_row)),
            Some((0, 0, Some(3), None))
        );
        assert_eq!(
            parse("'Loyalty Export'!A:F").map(|a| a.sheet),
            Some(Some("Loyalty Export".into()))
        );
        assert_eq!(
            parse("Weekly").map(|a| (a.sheet, a.end_col)),
            Some((Some("Weekly".into()), None))
        );
        assert_eq!(
            parse("Sheet1").map(|a| (a.sheet, a.start_row)),
            Some((Some("Sheet1".into()), 0))
        );
        assert_eq!(
            parse("B2:C3").map(|a| (a.sheet, a.start_col, a.start_row)),
            Some((None, 1, 1))
        );
        assert_eq!(parse("Sheet1!A0"), None);
        assert_eq!(
            (
                column_letters(0),
                column_letters(25),
                column_letters(26),
                column_letters(701)
            ),
            ("A".into(), "Z".into(), "AA".into(), "ZZ".into())
        );
        assert_eq!(column_index("AA"), Some(26));
    }
}
