//! TEMPORARY naive stand-in (replaced by the packed kernel from branch `kern`).
pub struct PackedMatrix { w: Vec<f32>, b: Option<Vec<f32>>, n: usize, k: usize }
impl PackedMatrix {
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self { Self { w: w.to_vec(), b: bias.map(|b| b.to_vec()), n, k } }
    pub fn n(&self) -> usize { self.n }
    pub fn k(&self) -> usize { self.k }
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        for i in 0..m { for j in 0..self.n {
            let mut acc = 0f32; for t in 0..self.k { acc = x[i*self.k+t].mul_add(self.w[j*self.k+t], acc); }
            out[i*self.n+j] = acc + self.b.as_ref().map_or(0.0, |b| b[j]);
        } }
    }
    pub fn row(&self, r: usize, out: &mut [f32]) { out.copy_from_slice(&self.w[r*self.k..(r+1)*self.k]) }
    pub fn bytes(&self) -> usize { self.w.len() * 4 }
}
