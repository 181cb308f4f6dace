//! Cosine similarity of embeddings against a reference model's.

/// cos(a, b) in f64; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// A candidate's embeddings against the reference's, sentence by sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingScore {
    /// Cosine per sentence, in input order.
    pub cosines: Vec<f64>,
    pub mean: f64,
    /// The lowest cosine and the index of its sentence.
    pub worst: f64,
    pub worst_index: usize,
}

impl EmbeddingScore {
    /// Scores `candidate` against `reference` (one embedding per sentence each).
    pub fn new(reference: &[Vec<f32>], candidate: &[Vec<f32>]) -> Self {
        let cosines: Vec<f64> = reference.iter().zip(candidate).map(|(r, c)| cosine(r, c)).collect();
        let (worst_index, worst) = cosines.iter().copied().enumerate().fold((0, f64::INFINITY), |m, (i, c)| if c < m.1 { (i, c) } else { m });
        let mean = cosines.iter().sum::<f64>() / cosines.len().max(1) as f64;
        Self { cosines, mean, worst: if worst.is_finite() { worst } else { 0.0 }, worst_index }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0])).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!((cosine(&[3.0, 4.0], &[4.0, 3.0]) - 24.0 / 25.0).abs() < 1e-12);
        let s = EmbeddingScore::new(&[vec![1.0, 0.0], vec![1.0, 1.0]], &[vec![1.0, 0.0], vec![1.0, -1.0]]);
        assert_eq!((s.worst_index, s.mean), (1, 0.5));
    }
}
