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

/// <summary>Receives the 8 x 8 register tile of one thread, four consecutive columns at a time.</summary>
internal interface ITileSink
{
    /// <summary>Output (row, col .. col + 4) of the 128 x 128 block tile, both relative to the tile's corner.</summary>
    void Row(int row, int col, Float4 v);
}

/// <summary>
/// The 8 x 8 register block of the V3 tiled kernels (128 x 128 block tile, 256 threads, 8-deep k-slices). Thread
/// (tx = t % 16, ty = t / 16) owns rows ty*4 .. +4 and 64 + ty*4 .. +4, and columns tx*4 .. +4 and 64 + tx*4 .. +4:
/// per k step it reads two 16-byte vectors of the A slice (the same two for the 16 threads of a half-warp: a
/// broadcast) and two of the B slice (16 consecutive vectors across a half-warp: no bank conflict), 4 shared loads for
/// 64 FMAs. Splitting each half of the tile at 64 keeps a warp's B reads within 256 consecutive bytes.
/// </summary>
internal struct RegisterTile8x8
{
    /// <summary>Rows and columns of the block tile; k-slice depth; shared row stride in floats (the +4 keeps rows
    /// 16-byte aligned and spreads the transposed 4-element stores of 32 threads over all 32 banks).</summary>
    public const int Tile = 128, TileK = 8, Ld = Tile + 4, Ld4 = Ld / 4, SliceFloats = TileK * Ld;

    public float C00, C01, C02, C03, C04, C05, C06, C07;
    public float C10, C11, C12, C13, C14, C15, C16, C17;
    public float C20, C21, C22, C23, C24, C25, C26, C27;
    public float C30, C31, C32, C33, C34, C35, C36, C37;
    public float C40, C41, C42, C43, C44, C45, C46, C47;
    public float C50, C51, C52, C53, C54, C55, C56, C57;
    public float C60, C61, C62, C63, C64, C65, C66, C67;
    public float C70, C71, C72, C73, C74, C75, C76, C77;

    /// <summary>C += As-slice^T · Bs-slice over one 8-deep slice: a and b are (TileK, Ld) float slices in shared memory
    /// viewed as <see cref="Float4"/>, starting at vector index <paramref name="base4"/> (the double-buffer half).</summary>
    public void Accumulate(ArrayView<Float4> a, ArrayView<Float4> b, int base4, int ty, int tx)
    {
        for (int p = 0; p < TileK; p++)
        {
            int o = base4 + p * Ld4;
            Float4 a0 = a[o + ty], a1 = a[o + 16 + ty];
            Float4 b0 = b[o + tx], b1 = b[o + 16 + tx];
            C00 += a0.X * b0.X; C01 += a0.X * b0.Y; C02 += a0.X * b0.Z; C03 += a0.X * b0.W; C04 += a0.X * b1.X; C05 += a0.X * b1.Y; C06 += a0.X * b1.Z; C07 += a0.X * b1.W;
            C10 += a0.Y * b0.X; C11 += a0.Y * b0.Y; C12 += a0.Y * b0.Z; C13 += a0.Y * b0.W; C14 += a0.Y * b1.X; C15 += a0.Y * b1.Y; C16 += a0.Y * b1.Z; C17 += a0.Y * b1.W;
            C20 += a0.Z * b0.X; C21 += a0.Z * b0.Y; C22 += a0.Z * b0.Z; C23 += a0.Z * b0.W; C24 += a0.Z * b1.X; C25 += a0.Z * b1.Y; C26 += a0.Z * b1.Z; C27 += a0.Z * b1.W;
            C30 += a0.W * b0.X; C31 += a0.W * b0.Y; C32 += a0.W * b0.Z; C33 += a0.W * b0.W; C34 += a0.W * b1.X; C35 += a0.W * b1.Y; C36 += a0.W * b1.Z; C37 += a0.W * b1.W;
            C40 += a1.X * b0.X; C41 += a1.X * b0.Y; C42 += a1.X * b0.Z; C43 += a1.X * b0.W; C44 += a1.X * b1.X; C45 += a1.X * b1.Y; C46 += a1.X * b1.Z; C47 += a1.X * b1.W;
            C50 += a1.Y * b0.X; C51 += a1.Y * b0.Y; C52 += a1.Y * b0.Z; C53 += a1.Y * b0.W; C54 += a1.Y * b1.X; C55 += a1.Y * b1.Y; C56 += a1.Y * b1.Z; C57 += a1.Y * b1.W;
            C60 += a1.Z * b0.X; C61 += a1.Z * b0.Y; C62 += a1.Z * b0.Z; C63 += a1.Z * b0.W; C64 += a1.Z * b1.X; C65 += a1.Z * b1.Y; C66 += a1.Z * b1.Z; C67 += a1.Z * b1.W;
            C70 += a1.W * b0.X; C71 += a1.W * b0.Y; C72 += a1.W * b0.Z; C73 += a1.W * b0.W; C74 += a1.W * b1.X; C75 += a1.W * b1.Y; C76 += a1.W * b1.Z; C77 += a1.W * b1.W;
        }
    }

    /// <summary>Hands every owned (row, 4 columns) to the kernel's epilogue.</summary>
    public readonly void Drain<TSink>(ref TSink sink, int ty, int tx) where TSink : struct, ITileSink
    {
        sink.Row(ty * 4 + 0, tx * 4, new Float4(C00, C01, C02, C03));
        sink.Row(ty * 4 + 0, 64 + tx * 4, new Float4(C04, C05, C06, C07));
        sink.Row(ty * 4 + 1, tx * 4, new Float4(C10, C11, C12, C13));
        sink.Row(ty * 4 + 1, 64 + tx * 4, new Float4(C14, C15, C16, C17));
        sink.Row(ty * 4 + 2, tx * 4, new Float4(C20, C21, C22, C23));
        sink.Row(ty * 4 + 2, 64 + tx * 4, new Float4(C24, C25, C26, C27));
        sink.Row(ty * 4 + 3, tx * 4, new Float4(C30, C31, C32, C33));
        sink.Row(ty * 4 + 3, 64 + tx * 4, new Float4(C34, C35, C36, C37));
        sink.Row(64 + ty * 4 + 0, tx * 4, new Float4(C40, C41, C42, C43));
        sink.Row(64 + ty * 4 + 0, 64 + tx * 4, new Float4(C44, C45, C46, C47));
        sink.Row(64 + ty * 4 + 1, tx * 4, new Float4(C50, C51, C52, C53));
        sink.Row(64 + ty * 4 + 1, 64 + tx * 4, new Float4(C54, C55, C56, C57));
        sink.Row(64 + ty * 4 + 2, tx * 4, new Float4(C60, C61, C62, C63));
        sink.Row(64 + ty * 4 + 2, 64 + tx * 4, new Float4(C64, C65, C66, C67));
        sink.Row(64 + ty * 4 + 3, tx * 4, new Float4(C70, C71, C72, C73));
        sink.Row(64 + ty * 4 + 3, 64 + tx * 4, new Float4(C74, C75, C76, C77));
    }
}

/// <summary>
/// Global-to-shared staging of the V3 tiled kernels. A thread carries 4 consecutive elements of a slice in one
/// <see cref="Float4"/> (the register prefetch of the next slice); the slice is stored (TileK, Ld) with the reduction
/// index k on rows, whichever of k or m/n is contiguous in global memory.
/// </summary>
internal static class TileLoad
{
    /// <summary>v[o .. o + n) with zeros after (n clamped to 0..4): one 16-byte load when <paramref name="vector"/>
    /// (v starts at a multiple of 4 elements and o is one) and all 4 are in range.</summary>
    public static Float4 Load4(ArrayView<float> v, ArrayView<Float4> v4, long o, int n, bool vector)
    {
        if (vector & n >= 4) return v4[o >> 2];
        var r = new Float4();
        if (n > 0) r.X = v[o];
        if (n > 1) r.Y = v[o + 1];
        if (n > 2) r.Z = v[o + 2];
        if (n > 3) r.W = v[o + 3];
        return r;
    }

    /// <summary>How many of the 4 elements starting at (mn, k) are inside (mnLimit, kLimit): 4 consecutive k at one
    /// mn when <paramref name="kContiguous"/>, else 4 consecutive mn at one k.</summary>
    public static int Count(bool kContiguous, int mn, int mnLimit, int k, int kLimit)
        => kContiguous
            ? (mn < mnLimit ? Math.Max(0, Math.Min(4, kLimit - k)) : 0)
            : (k < kLimit ? Math.Max(0, Math.Min(4, mnLimit - mn)) : 0);

    /// <summary>Stores a fragment at slice row k, column mn of the buffer half starting at float <paramref name="buf"/>:
    /// 4 rows k .. k + 4 of one column (transposed: 4 scalar stores, conflict-free thanks to the padded row) when
    /// <paramref name="kContiguous"/>, else columns mn .. mn + 4 of row k in one 16-byte store.</summary>
    public static void Store(ArrayView<float> s, ArrayView<Float4> s4, int buf, bool kContiguous, int k, int mn, Float4 v)
    {
        const int Ld = RegisterTile8x8.Ld;
        int o = buf + k * Ld + mn;
        if (kContiguous)
        {
            s[o] = v.X;
            s[o + Ld] = v.Y;
            s[o + 2 * Ld] = v.Z;
            s[o + 3 * Ld] = v.W;
        }
        else s4[o >> 2] = v;
    }
}
