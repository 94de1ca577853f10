//! Reading the Prometheus text exposition that `/metrics` serves, so tests
//! can assert exact values.

/// One parsed `/metrics` answer.
#[derive(Debug)]
pub struct Exposition {
    text: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Exposition {
    /// Parse `text` (the plain format: `name{k="v",…} value`, `#` comments).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("no value in {line:?}"));
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series, Vec::new()),
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                }
            })
            .collect();
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the series `name` with exactly `labels` (in any order),
    /// if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// Like [`Self::get`], but a missing series fails the test, showing the text.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in\n{}", self.text))
    }
}

/// `k="v",k2="v2"` (our label values hold no quotes or commas).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("bad label {pair:?}"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_labels_and_histograms() {
        let m = Exposition::parse(
            "# HELP a_total x\n# TYPE a_total counter\na_total{reason=\"bad_request\"} 2\n\
             h_bucket{le=\"+Inf\"} 3\nh_count 3\ng 1\n",
        );
        assert_eq!(m.get("a_total", &[("reason", "bad_request")]), Some(2.0));
        assert_eq!(m.get("a_total", &[]), None);
        assert_eq!(m.value("h_bucket", &[("le", "+Inf")]), 3.0);
        assert_eq!(m.value("h_count", &[]), 3.0);
        assert_eq!(m.value("g", &[]), 1.0);
    }
}
