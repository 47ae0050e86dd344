using ILGPU;

namespace Tp7.Engine.Kernels;

/// <summary>
/// The 4 x 4 register block of the 64 x 64 tiled GPU kernels (GEMM, implicit-GEMM convolution forward, backward-data
/// and backward-weight): thread (tx, ty) of a 16 x 16 group owns rows ty + 16 i and columns tx + 16 j (i, j in 0..3),
/// strided so a warp's shared-memory reads are broadcasts (A) or 16 consecutive words (B). One definition of the
/// inner product over a (TileK, 64) slice pair, so every tiled kernel runs the same FMA sequence.
/// </summary>
internal struct RegisterTile
{
    public const int Tile = 64, TileK = 16;

    public float C00, C01, C02, C03, C10, C11, C12, C13, C20, C21, C22, C23, C30, C31, C32, C33;

    /// <summary>C += Aᵀ-slice · B-slice: a (TileK, 64) and b (TileK, 64) in shared memory, element (p, i) at p * 64 + i.</summary>
    public void Accumulate(ArrayView<float> a, ArrayView<float> b, int ty, int tx)
    {
        for (int p = 0; p < TileK; p++)
        {
            int ao = p * Tile + ty, bo = p * Tile + tx;
            float a0 = a[ao], a1 = a[ao + 16], a2 = a[ao + 32], a3 = a[ao + 48];
            float b0 = b[bo], b1 = b[bo + 16], b2 = b[bo + 32], b3 = b[bo + 48];
            C00 += a0 * b0; C01 += a0 * b1; C02 += a0 * b2; C03 += a0 * b3;
            C10 += a1 * b0; C11 += a1 * b1; C12 += a1 * b2; C13 += a1 * b3;
            C20 += a2 * b0; C21 += a2 * b1; C22 += a2 * b2; C23 += a2 * b3;
            C30 += a3 * b0; C31 += a3 * b1; C32 += a3 * b2; C33 += a3 * b3;
        }
    }
}
