//! Stop strings: text that could be the start of one is held back until it is known not to
//! be, and generation ends where one appears (the stop string itself is never emitted).

/// Holds back text that could be the start of a stop string.
pub(crate) struct StopFilter {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopFilter {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds decoded text; returns (text safe to emit now, whether a stop string was hit).
    pub(crate) fn push(&mut self, chunk: &str) -> (String, bool) {
        let search_from = self.emitted;
        self.text.push_str(chunk);
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|i| search_from + i)
            })
            .min();
        if let Some(end) = hit {
            let out = self.text[self.emitted..end].to_string();
            self.text.truncate(end);
            self.emitted = end;
            return (out, true);
        }
        // keep back the longest suffix that is a prefix of a stop string
        let mut safe = self.text.len();
        for (i, _) in self.text[self.emitted..].char_indices() {
            let at = self.emitted + i;
            let tail = &self.text[at..];
            if self
                .stops
                .iter()
                .any(|s| s.len() > tail.len() && s.starts_with(tail))
            {
                safe = at;
                break;
            }
        }
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    pub(crate) fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_filter_holds_back_partial_matches() {
        let stops = vec!["END".to_string()];
        let mut f = StopFilter::new(stops.clone());
        assert_eq!(f.push("hello E"), ("hello ".into(), false));
        assert_eq!(f.push("N"), ("".into(), false));
        assert_eq!(f.push("X more"), ("ENX more".into(), false));
        assert_eq!(f.push(" and EN"), (" and ".into(), false));
        assert_eq!(f.push("D tail"), ("".into(), true));
        assert_eq!(f.text, "hello ENX more and ");
        let mut g = StopFilter::new(stops);
        assert_eq!(g.push("x ENDy"), ("x ".into(), true));
        let mut h = StopFilter::new(Vec::new());
        assert_eq!(h.push("abc"), ("abc".into(), false));
        assert_eq!(h.finish(), "");
    }
}
