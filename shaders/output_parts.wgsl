// Where a linear layer's output (activation row r, output feature j) lands in y.
// Shared by matvec_io.wgsl, matmul.wgsl and matvec_dot4.wgsl.
//
// A fused projection (Q|K|V or gate|up in one matrix, one dispatch) writes its outputs as up
// to three planar parts, one after the other: features [0, part1), [part1, part2) and
// [part2, n), each a `block_rows × width` matrix, so that every part can be bound on its own
// as the next kernel's input. With part1 = part2 = n there is one part and this is the usual
// row-major r * n + j.
fn output_index(r: u32, j: u32, n: u32, part1: u32, part2: u32, block_rows: u32) -> u32 {
    var start = 0u;
    var end = part1;
    if j >= part2 {
        start = part2;
        end = n;
    } else if j >= part1 {
        start = part1;
        end = part2;
    }
    return start * block_rows + r * (end - start) + (j - start);
}
