using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Convolution forward, backward-data and backward-weight as implicit GEMMs on 128 x 128 block tiles with 8 x 8 register
// blocks (RegisterTile8x8): the V3 versions of Conv2dVersion / Conv2dBackwardVersion. The host twins and the V1/V2
// kernels are in Conv2d.cs; backward rule as there: dx overwrites, dw and db accumulate.
//
// The im2col gathers divide nothing inside the reduction loop. Each thread decodes its 4 GEMM columns (output or
// input pixels, or weight columns (c, r, q)) once, before the loop, and walks the reduction index of its slice row
// with a cursor ((c, r, q), (k, r, q) or (n, oy, ox)) that advances by the slice depth (8) with one carry per digit:
// the per-digit steps 8 % S, (8 / S) % R, 8 / (R·S) are divided once per thread. Indices that stay below 2^31 (pixels of
// the GEMM, H·W, C·R·S, K·R·S) are 32-bit, checked by the launchers; tensor offsets are 64-bit and built by addition
// and multiplication only.

/// <summary>Where a kernel thread's pixel lies: far outside any image, so that every bounds test on it fails.</summary>
internal static class ConvTile
{
    /// <summary>Row base of a pixel past the end of the GEMM: adding any filter offset keeps it negative.</summary>
    public const int Far = int.MinValue / 4;

    /// <summary>4 consecutive GEMM columns (n, oy, ox) flattened, decoded once: per column the input row and column of
    /// filter tap (0, 0) (or <see cref="Far"/> past <paramref name="pixels"/>) and n·channels, the first (n, channel)
    /// plane of its image in the gathered tensor (32-bit: the launchers check N·C and N·K; a load multiplies it, plus
    /// the channel, by the plane size in 64 bits).</summary>
    public struct Columns4
    {
        public int Iy0, Iy1, Iy2, Iy3, Ix0, Ix1, Ix2, Ix3, Nc0, Nc1, Nc2, Nc3;

        /// <param name="col">First column (flattened (n, oy, ox) of a plane OH x OW).</param>
        /// <param name="channels">Channels of the gathered tensor.</param>
        /// <param name="scaleY">Multiplier of oy (the stride for the forward gather, 1 for backward-data).</param>
        /// <param name="offY">Added to oy·scaleY (-padTop forward, +padTop backward-data).</param>
        public Columns4(int col, int pixels, int outH, int outW, int channels, int scaleY, int scaleX, int offY, int offX)
        {
            int plane = outH * outW;
            int n = col / plane, pix = col - n * plane;
            int oy = pix / outW, ox = pix - oy * outW;
            Iy0 = Iy1 = Iy2 = Iy3 = Far; Ix0 = Ix1 = Ix2 = Ix3 = 0;
            Nc0 = Nc1 = Nc2 = Nc3 = 0;
            for (int j = 0; j < 4; j++)
            {
                int iy = col + j < pixels ? oy * scaleY + offY : Far, ix = ox * scaleX + offX;
                int nc = col + j < pixels ? n * channels : 0;
                if (j == 0) { Iy0 = iy; Ix0 = ix; Nc0 = nc; }
                else if (j == 1) { Iy1 = iy; Ix1 = ix; Nc1 = nc; }
                else if (j == 2) { Iy2 = iy; Ix2 = ix; Nc2 = nc; }
                else { Iy3 = iy; Ix3 = ix; Nc3 = nc; }
                if (++ox == outW) { ox = 0; if (++oy == outH) { oy = 0; n++; } }
            }
        }
    }

    /// <summary>A reduction index written as three digits (hi, mid, lo) of radices (-, midSize, loSize), advanced by a
    /// constant (the slice depth) without division: one carry per digit, since each digit step is below its radix.</summary>
    public struct Cursor3
    {
        public int Hi, Mid, Lo;
        private readonly int _dHi, _dMid, _dLo, _midSize, _loSize;

        public Cursor3(int start, int step, int midSize, int loSize)
        {
            int inner = midSize * loSize;
            Hi = start / inner;
            int rem = start - Hi * inner;
            Mid = rem / loSize;
            Lo = rem - Mid * loSize;
            _dHi = step / inner;
            rem = step - _dHi * inner;
            _dMid = rem / loSize;
            _dLo = rem - _dMid * loSize;
            _midSize = midSize;
            _loSize = loSize;
        }

        public void Advance()
        {
            Lo += _dLo;
            int carry = Lo >= _loSize ? 1 : 0;
            Lo -= carry * _loSize;
            Mid += _dMid + carry;
            carry = Mid >= _midSize ? 1 : 0;
            Mid -= carry * _midSize;
            Hi += _dHi + carry;
        }
    }
}

public sealed partial class Conv2dGpu
{
    private const int T3 = RegisterTile8x8.Tile, TK3 = RegisterTile8x8.TileK, Slice3 = RegisterTile8x8.SliceFloats;

    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>? _implicitGemm128;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>? _dataTiled128;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int, int>? _weightTiled128;

    /// <summary>Loads the V3 kernels (called by the constructor when the accelerator allows 256-thread groups).</summary>
    private void LoadTiled128Kernels(Accelerator accelerator)
    {
        _implicitGemm128 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>(ImplicitGemmV3Kernel);
        _dataTiled128 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>(BackwardDataV3Kernel);
        _weightTiled128 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int, int>(BackwardWeightV3Kernel);
    }

    /// <summary>The V3 kernels index GEMM columns and planes in 32 bits: refuse what does not fit, naming the way out.</summary>
    private static void RequireTiled128Sizes(ConvShape s, long columns, string op)
    {
        if (columns > int.MaxValue - T3 || (long)s.H * s.W > int.MaxValue || (long)s.OutH * s.OutW > int.MaxValue
            || (long)s.C * s.R * s.S > int.MaxValue || (long)s.K * s.R * s.S > int.MaxValue
            || (long)s.N * Math.Max(s.C, s.K) > int.MaxValue)
            throw new ArgumentException($"{op} V3: a GEMM dimension of {s} exceeds 2^31-1; use the V2 version");
    }

    private void LaunchForwardV3(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvShape s, ConvArgs args)
    {
        if (_implicitGemm128 == null) Accelerators.RequireTiledGroup(_acc, "conv2d V3ImplicitGemm128");
        RequireTiled128Sizes(s, args.Pixels, "conv2d");
        int plane = s.OutH * s.OutW;
        int vec = (Accelerators.Vector4Aligned(w, args.Crs) ? 1 : 0) | (Accelerators.Vector4Aligned(y, plane) ? 2 : 0);
        var grid = new Index2D((int)((args.Pixels + T3 - 1) / T3), (s.K + T3 - 1) / T3);
        _implicitGemm128!(new KernelConfig(grid, new Index2D(Threads, 1)), y, x, w, b, args, vec);
    }

    private void LaunchBackwardDataV3(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvShape s, ConvArgs args)
    {
        if (_dataTiled128 == null) Accelerators.RequireTiledGroup(_acc, "conv2d backward-data V3Tiled128");
        long pixels = (long)s.N * s.H * s.W;
        RequireTiled128Sizes(s, pixels, "conv2d backward-data");
        int vec = (Accelerators.Vector4Aligned(dx, s.H * s.W) ? 2 : 0) | StrideShifts(s) << 8;
        var grid = new Index2D((int)((pixels + T3 - 1) / T3), (s.C + T3 - 1) / T3);
        _dataTiled128!(new KernelConfig(grid, new Index2D(Threads, 1)), dx, dy, w, args, vec);
    }

    private void LaunchBackwardWeightV3(ArrayView<float> dw, ArrayView<float> dy, ArrayView<float> x, ConvShape s, ConvArgs args)
    {
        if (_weightTiled128 == null) Accelerators.RequireTiledGroup(_acc, "conv2d backward-weight V3Tiled128");
        RequireTiled128Sizes(s, args.Pixels, "conv2d backward-weight");
        int colTiles = (args.Crs + T3 - 1) / T3, rowTiles = (s.K + T3 - 1) / T3;
        int splitLen = WeightSplitLengthV3(args.Pixels, (long)colTiles * rowTiles);
        int splits = (int)((args.Pixels + splitLen - 1) / splitLen);
        int vec = Accelerators.Vector4Aligned(dw, args.Crs) ? 4 : 0;
        _weightTiled128!(new KernelConfig(new Index3D(colTiles, rowTiles, splits), new Index3D(Threads, 1, 1)), dw, dy, x, args, splitLen, vec);
    }

    /// <summary>log2 of both strides packed (H in bits 0-4, W in 5-9) when both are powers of two, else -1.</summary>
    private static int StrideShifts(ConvShape s)
        => System.Numerics.BitOperations.IsPow2(s.StrideH) && System.Numerics.BitOperations.IsPow2(s.StrideW)
            ? System.Numerics.BitOperations.Log2((uint)s.StrideH) | System.Numerics.BitOperations.Log2((uint)s.StrideW) << 5
            : -1;

    /// <summary>
    /// Reduction length per group of the V3 backward-weight, a multiple of the 8-deep slice: at most
    /// <see cref="MaxSplitLength"/>, shorter when output tiles x splits would leave multiprocessors without groups,
    /// never under 16 slices (the atomic adds, one per output per split, stay below 1/128 of the multiply-adds).
    /// </summary>
    private int WeightSplitLengthV3(long reduction, long outputTiles)
    {
        long wantGroups = 4L * Math.Max(1, _acc.NumMultiprocessors);
        long splits = Math.Max(Math.Max(1, wantGroups / outputTiles), (reduction + MaxSplitLength - 1) / MaxSplitLength);
        long len = (reduction + splits - 1) / splits;
        len = Math.Max(16L * TK3, (len + TK3 - 1) / TK3 * TK3);
        return (int)Math.Min(len, int.MaxValue / 2 / TK3 * TK3);
    }

    /// <summary>
    /// Forward, version 3: Y (K, N·OH·OW) = W (K, C·R·S) x im2col(X). Group (bx, by) owns output channels by*128 .. +128
    /// and GEMM columns bx*128 .. +128 in the layout of <see cref="RegisterTile8x8"/>; 8-deep slices double-buffered as
    /// in <see cref="GemmGpu"/>'s V3. Weight slice: thread t loads 4 consecutive p = (c, r, q) of channel t/2 (contiguous
    /// in OIHW; one 16-byte load when C·R·S is a multiple of 4, <paramref name="vec"/> bit 0) and stores them
    /// transposed. im2col slice: thread t loads slice row t/32 for the 4 consecutive columns (t % 32)·4 .. +4, decoded
    /// once (<see cref="ConvTile.Columns4"/>), at the reduction index of a (c, r, q) cursor; one 16-byte shared store.
    /// Epilogue: bias, ReLU, and 16-byte stores to y when the plane is a multiple of 4 (bit 1).
    /// </summary>
    private static void ImplicitGemmV3Kernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s, int vec)
    {
        var Ws = SharedMemory.Allocate<float>(2 * Slice3);
        var Xs = SharedMemory.Allocate<float>(2 * Slice3);
        var Ws4 = Ws.Cast<Float4>();
        var Xs4 = Xs.Cast<Float4>();
        var w4 = w.Cast<Float4>();
        int t = Group.IdxX, tx = t & 15, ty = t >> 4;
        int row0 = Grid.IdxY * T3, col0 = Grid.IdxX * T3;
        int pixels = (int)s.Pixels, hw = s.H * s.W;
        bool vecW = (vec & 1) != 0;

        int wMn = t >> 1, wK = (t & 1) * 4, wRow = row0 + wMn;
        long oW = (long)wRow * s.Crs + wK;

        int xK = t >> 5, xMn = (t & 31) * 4;
        var cols = new ConvTile.Columns4(col0 + xMn, pixels, s.OutH, s.OutW, s.C, s.StrideH, s.StrideW, -s.PadH, -s.PadW);
        var p = new ConvTile.Cursor3(xK, TK3, s.R, s.S); // (c, r, q) of reduction index xK + k0

        var fw = TileLoad.Load4(w, w4, oW, TileLoad.Count(true, wRow, s.K, wK, s.Crs), vecW);
        var fx = GatherForward(x, s, cols, p, xK < s.Crs, hw);
        TileLoad.Store(Ws, Ws4, 0, true, wK, wMn, fw);
        TileLoad.Store(Xs, Xs4, 0, false, xK, xMn, fx);
        Group.Barrier();

        var acc = new RegisterTile8x8();
        int cur = 0;
        for (int k0 = 0; k0 < s.Crs; k0 += TK3)
        {
            int k1 = k0 + TK3;
            bool more = k1 < s.Crs;
            if (more)
            {
                oW += TK3;
                p.Advance();
                fw = TileLoad.Load4(w, w4, oW, TileLoad.Count(true, wRow, s.K, k1 + wK, s.Crs), vecW);
                fx = GatherForward(x, s, cols, p, k1 + xK < s.Crs, hw);
            }
            acc.Accumulate(Ws4, Xs4, cur * (Slice3 / 4), ty, tx);
            if (more)
            {
                int next = (cur ^ 1) * Slice3;
                TileLoad.Store(Ws, Ws4, next, true, wK, wMn, fw);
                TileLoad.Store(Xs, Xs4, next, false, xK, xMn, fx);
            }
            Group.Barrier();
            cur ^= 1;
        }

        var sink = new PixelSink(y, b, s.K, s.OutH * s.OutW, pixels, row0, col0, tx, s.Relu, (vec & 2) != 0, bias: true);
        acc.Drain(ref sink, ty, tx);
    }

    /// <summary>im2col(x) at reduction index (c, r, q) = cursor for the 4 decoded columns; 0 in the padding and past the ends.</summary>
    private static Float4 GatherForward(ArrayView<float> x, ConvArgs s, ConvTile.Columns4 cols, ConvTile.Cursor3 p, bool valid, int hw)
    {
        var v = new Float4();
        if (!valid) return v;
        int c = p.Hi, r = p.Mid, q = p.Lo;
        int iy = cols.Iy0 + r, ix = cols.Ix0 + q;
        if ((uint)iy < (uint)s.H && (uint)ix < (uint)s.W) v.X = x[(long)(cols.Nc0 + c) * hw + iy * s.W + ix];
        iy = cols.Iy1 + r; ix = cols.Ix1 + q;
        if ((uint)iy < (uint)s.H && (uint)ix < (uint)s.W) v.Y = x[(long)(cols.Nc1 + c) * hw + iy * s.W + ix];
        iy = cols.Iy2 + r; ix = cols.Ix2 + q;
        if ((uint)iy < (uint)s.H && (uint)ix < (uint)s.W) v.Z = x[(long)(cols.Nc2 + c) * hw + iy * s.W + ix];
        iy = cols.Iy3 + r; ix = cols.Ix3 + q;
        if ((uint)iy < (uint)s.H && (uint)ix < (uint)s.W) v.W = x[(long)(cols.Nc3 + c) * hw + iy * s.W + ix];
        return v;
    }

    /// <summary>
    /// Epilogue of the forward and backward-data V3 kernels: output (row = channel, col = flattened (n, pixel)) into
    /// (N, channels, plane). The thread's two column groups are decoded once (one 32-bit division each); 4 consecutive
    /// columns are one 16-byte store when the plane is a multiple of 4 (then they are in one image and aligned).
    /// </summary>
    private struct PixelSink : ITileSink
    {
        private readonly ArrayView<float> _y, _b;
        private readonly ArrayView<Float4> _y4;
        private readonly int _channels, _plane, _pixels, _row0, _col0, _relu;
        private readonly int _nLo, _pixLo, _nHi, _pixHi;
        private readonly bool _vector, _bias;

        public PixelSink(ArrayView<float> y, ArrayView<float> b, int channels, int plane, int pixels, int row0, int col0, int tx,
            int relu, bool vector, bool bias)
        {
            _y = y; _b = b; _y4 = y.Cast<Float4>();
            _channels = channels; _plane = plane; _pixels = pixels; _row0 = row0; _col0 = col0; _relu = relu;
            _vector = vector; _bias = bias;
            int lo = col0 + tx * 4, hi = lo + 64;
            _nLo = lo / plane; _pixLo = lo - _nLo * plane;
            _nHi = hi / plane; _pixHi = hi - _nHi * plane;
        }

        public void Row(int row, int col, Float4 v)
        {
            int k = _row0 + row;
            int first = _col0 + col;
            if (k >= _channels || first >= _pixels) return;
            bool hi = col >= 64;
            int n = hi ? _nHi : _nLo, pix = hi ? _pixHi : _pixLo;
            float add = _bias ? _b[k] : 0f;
            v.X += add; v.Y += add; v.Z += add; v.W += add;
            if (_relu != 0)
            {
                // As V2: v < 0 ? 0 : v keeps a NaN a NaN (max.f32 would turn it into 0).
                v.X = v.X < 0f ? 0f : v.X; v.Y = v.Y < 0f ? 0f : v.Y; v.Z = v.Z < 0f ? 0f : v.Z; v.W = v.W < 0f ? 0f : v.W;
            }
            long o = ((long)n * _channels + k) * _plane + pix;
            if (_vector)
            {
                _y4[o >> 2] = v;
                return;
            }
            for (int j = 0; j < 4; j++)
            {
                if (first + j >= _pixels) return;
                _y[o] = j == 0 ? v.X : j == 1 ? v.Y : j == 2 ? v.Z : v.W;
                if (++pix == _plane) { pix = 0; n++; o = ((long)n * _channels + k) * _plane; }
                else o++;
            }
        }
    }

    /// <summary>
    /// Backward-data, version 3: dx (C, N·H·W) = Wᵀ (C, K·R·S) x gather(dy). Group (bx, by) owns input channels
    /// by*128 .. +128 and dx pixels bx*128 .. +128. Both slices are loaded at slice row t/32 with one (k, r, q) cursor:
    /// w[k, c .. c + 4, r, q] for the 4 channels c = (t % 32)·4 .. +4 (R·S apart in memory), and dy[n, k, oy, ox] for the
    /// 4 decoded pixels with oy = (iy + padTop - r) / strideH, ox likewise, 0 where the division is inexact or (oy, ox)
    /// falls outside dy. Stride 1 (uniform branch) needs no division; other strides divide in 32 bits.
    /// </summary>
    private static void BackwardDataV3Kernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvArgs s, int vec)
    {
        int shifts = vec >> 8;
        var Ws = SharedMemory.Allocate<float>(2 * Slice3);
        var Ys = SharedMemory.Allocate<float>(2 * Slice3);
        var Ws4 = Ws.Cast<Float4>();
        var Ys4 = Ys.Cast<Float4>();
        int t = Group.IdxX, tx = t & 15, ty = t >> 4;
        int row0 = Grid.IdxY * T3, col0 = Grid.IdxX * T3;
        int rs = s.R * s.S, krs = s.K * rs, hw = s.H * s.W, pixels = s.N * hw, outPlane = s.OutH * s.OutW;

        int pK = t >> 5, mn = (t & 31) * 4;
        int c = row0 + mn;
        // dx pixels (n, iy, ix) as columns of an (H, W) plane; their tap-(0, 0) rows/cols are iy + padTop, ix + padLeft.
        var cols = new ConvTile.Columns4(col0 + mn, pixels, s.H, s.W, s.K, 1, 1, s.PadH, s.PadW);
        var p = new ConvTile.Cursor3(pK, TK3, s.R, s.S); // (k, r, q)

        var fw = GatherWeightT(w, s, p, pK < krs, c, rs);
        var fy = GatherDy(dy, s, cols, p, pK < krs, outPlane, shifts);
        TileLoad.Store(Ws, Ws4, 0, false, pK, mn, fw);
        TileLoad.Store(Ys, Ys4, 0, false, pK, mn, fy);
        Group.Barrier();

        var acc = new RegisterTile8x8();
        int cur = 0;
        for (int k0 = 0; k0 < krs; k0 += TK3)
        {
            int k1 = k0 + TK3;
            bool more = k1 < krs;
            if (more)
            {
                p.Advance();
                fw = GatherWeightT(w, s, p, k1 + pK < krs, c, rs);
                fy = GatherDy(dy, s, cols, p, k1 + pK < krs, outPlane, shifts);
            }
            acc.Accumulate(Ws4, Ys4, cur * (Slice3 / 4), ty, tx);
            if (more)
            {
                int next = (cur ^ 1) * Slice3;
                TileLoad.Store(Ws, Ws4, next, false, pK, mn, fw);
                TileLoad.Store(Ys, Ys4, next, false, pK, mn, fy);
            }
            Group.Barrier();
            cur ^= 1;
        }

        var sink = new PixelSink(dx, dx, s.C, hw, pixels, row0, col0, tx, relu: 0, (vec & 2) != 0, bias: false);
        acc.Drain(ref sink, ty, tx);
    }

    /// <summary>w[k, c .. c + 4, r, q] at cursor (k, r, q), 0 past C or past K·R·S.</summary>
    private static Float4 GatherWeightT(ArrayView<float> w, ConvArgs s, ConvTile.Cursor3 p, bool valid, int c, int rs)
    {
        var v = new Float4();
        if (!valid) return v;
        long o = ((long)p.Hi * s.C + c) * rs + p.Mid * s.S + p.Lo;
        if (c < s.C) v.X = w[o];
        if (c + 1 < s.C) v.Y = w[o + rs];
        if (c + 2 < s.C) v.Z = w[o + 2 * rs];
        if (c + 3 < s.C) v.W = w[o + 3 * rs];
        return v;
    }

    /// <summary>dy[n, k, (ty - r) / strideH, (tx - q) / strideW] for the 4 decoded pixels (ty, tx = their padded input
    /// row and column) at cursor (k, r, q); 0 where the division is inexact or the position is outside dy.</summary>
    private static Float4 GatherDy(ArrayView<float> dy, ConvArgs s, ConvTile.Columns4 cols, ConvTile.Cursor3 p, bool valid, int outPlane, int shifts)
    {
        var v = new Float4();
        if (!valid) return v;
        int k = p.Hi, r = p.Mid, q = p.Lo;
        v.X = DyAt(dy, s, (long)(cols.Nc0 + k) * outPlane, cols.Iy0 - r, cols.Ix0 - q, shifts);
        v.Y = DyAt(dy, s, (long)(cols.Nc1 + k) * outPlane, cols.Iy1 - r, cols.Ix1 - q, shifts);
        v.Z = DyAt(dy, s, (long)(cols.Nc2 + k) * outPlane, cols.Iy2 - r, cols.Ix2 - q, shifts);
        v.W = DyAt(dy, s, (long)(cols.Nc3 + k) * outPlane, cols.Iy3 - r, cols.Ix3 - q, shifts);
        return v;
    }

    /// <param name="shifts">log2 of the strides (bits 0-4 H, 5-9 W) when both are powers of two, else -1.</param>
    private static float DyAt(ArrayView<float> dy, ConvArgs s, long o, int yy, int xx, int shifts)
    {
        if (yy < 0 || xx < 0) return 0f;
        int oy, ox;
        if (shifts >= 0)
        {
            // Power-of-two strides (1 and 2 in practice): shift and mask, no division.
            int sh = shifts & 31, sw = shifts >> 5;
            if ((yy & ((1 << sh) - 1)) != 0 || (xx & ((1 << sw) - 1)) != 0) return 0f;
            oy = yy >> sh;
            ox = xx >> sw;
        }
        else
        {
            oy = yy / s.StrideH;
            ox = xx / s.StrideW;
            if (oy * s.StrideH != yy || ox * s.StrideW != xx) return 0f;
        }
        return oy < s.OutH && ox < s.OutW ? dy[o + oy * s.OutW + ox] : 0f;
    }

    /// <summary>
    /// Backward-weight, version 3, with split reduction: dw (K, C·R·S) += dy (K, N·OH·OW) x im2col(x)ᵀ over the range
    /// [bz·splitLen, +splitLen) of the flattened (n, oy, ox). Group (bx, by, bz) owns dw rows by*128 .. +128 and columns
    /// j = (c, r, q) bx*128 .. +128. Both slices are loaded at slice row t/32 with one (n, oy, ox) cursor: dy for the 4
    /// output channels (t % 32)·4 .. +4 (a plane apart) and x for the 4 columns j of the same offset, decoded once into
    /// (channel offset, r, q). Added to dw atomically when the reduction is split over several groups; 16-byte
    /// read-add-write when not split and C·R·S is a multiple of 4 (<paramref name="vec"/> bit 2).
    /// </summary>
    private static void BackwardWeightV3Kernel(ArrayView<float> dw, ArrayView<float> dy, ArrayView<float> x, ConvArgs s, int splitLen, int vec)
    {
        var Ds = SharedMemory.Allocate<float>(2 * Slice3);
        var Xs = SharedMemory.Allocate<float>(2 * Slice3);
        var Ds4 = Ds.Cast<Float4>();
        var Xs4 = Xs.Cast<Float4>();
        int t = Group.IdxX, tx = t & 15, ty = t >> 4;
        int row0 = Grid.IdxY * T3, col0 = Grid.IdxX * T3;
        int pixels = (int)s.Pixels;
        int g0 = Grid.IdxZ * splitLen, g1 = Math.Min(pixels, g0 + splitLen);
        int rs = s.R * s.S, hw = s.H * s.W, outPlane = s.OutH * s.OutW;

        int gK = t >> 5, mn = (t & 31) * 4;
        int k = row0 + mn;
        // This thread's 4 weight columns j = col0 + mn .. +4 as (channel offset, r, q); r = Far past C·R·S.
        int j0 = col0 + mn;
        var cj = new ConvTile.Cursor3(j0, 1, s.R, s.S);
        long xc0 = 0, xc1 = 0, xc2 = 0, xc3 = 0;
        int r0 = ConvTile.Far, r1 = ConvTile.Far, r2 = ConvTile.Far, r3 = ConvTile.Far, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
        for (int u = 0; u < 4; u++)
        {
            bool ok = j0 + u < s.Crs;
            long xc = (long)cj.Hi * hw;
            int r = ok ? cj.Mid - s.PadH : ConvTile.Far, q = cj.Lo - s.PadW;
            if (u == 0) { xc0 = xc; r0 = r; q0 = q; }
            else if (u == 1) { xc1 = xc; r1 = r; q1 = q; }
            else if (u == 2) { xc2 = xc; r2 = r; q2 = q; }
            else { xc3 = xc; r3 = r; q3 = q; }
            cj.Advance();
        }
        var g = new ConvTile.Cursor3(g0 + gK, TK3, s.OutH, s.OutW); // (n, oy, ox)

        var fd = GatherDyRows(dy, s, g, g0 + gK < g1, k, outPlane);
        var fx = GatherIm2colT(x, s, g, g0 + gK < g1, hw, xc0, xc1, xc2, xc3, r0, r1, r2, r3, q0, q1, q2, q3);
        TileLoad.Store(Ds, Ds4, 0, false, gK, mn, fd);
        TileLoad.Store(Xs, Xs4, 0, false, gK, mn, fx);
        Group.Barrier();

        var acc = new RegisterTile8x8();
        int cur = 0;
        for (int gs = g0; gs < g1; gs += TK3)
        {
            int gn = gs + TK3;
            bool more = gn < g1;
            if (more)
            {
                g.Advance();
                fd = GatherDyRows(dy, s, g, gn + gK < g1, k, outPlane);
                fx = GatherIm2colT(x, s, g, gn + gK < g1, hw, xc0, xc1, xc2, xc3, r0, r1, r2, r3, q0, q1, q2, q3);
            }
            acc.Accumulate(Ds4, Xs4, cur * (Slice3 / 4), ty, tx);
            if (more)
            {
                int next = (cur ^ 1) * Slice3;
                TileLoad.Store(Ds, Ds4, next, false, gK, mn, fd);
                TileLoad.Store(Xs, Xs4, next, false, gK, mn, fx);
            }
            Group.Barrier();
            cur ^= 1;
        }

        var sink = new WeightSink(dw, s.K, s.Crs, row0, col0, Grid.DimZ > 1, (vec & 4) != 0);
        acc.Drain(ref sink, ty, tx);
    }

    /// <summary>dy[n, k .. k + 4, oy, ox] at cursor (n, oy, ox), 0 past K or past the split.</summary>
    private static Float4 GatherDyRows(ArrayView<float> dy, ConvArgs s, ConvTile.Cursor3 g, bool valid, int k, int outPlane)
    {
        var v = new Float4();
        if (!valid) return v;
        long o = ((long)g.Hi * s.K + k) * outPlane + g.Mid * s.OutW + g.Lo;
        if (k < s.K) v.X = dy[o];
        if (k + 1 < s.K) v.Y = dy[o + outPlane];
        if (k + 2 < s.K) v.Z = dy[o + 2L * outPlane];
        if (k + 3 < s.K) v.W = dy[o + 3L * outPlane];
        return v;
    }

    /// <summary>im2col(x)ᵀ at reduction index (n, oy, ox) = cursor for 4 weight columns (channel offset, r - padTop, q - padLeft).</summary>
    private static Float4 GatherIm2colT(ArrayView<float> x, ConvArgs s, ConvTile.Cursor3 g, bool valid, int hw,
        long xc0, long xc1, long xc2, long xc3, int r0, int r1, int r2, int r3, int q0, int q1, int q2, int q3)
    {
        var v = new Float4();
        if (!valid) return v;
        long xn = (long)g.Hi * s.C * hw;
        int iy = g.Mid * s.StrideH, ix = g.Lo * s.StrideW;
        int yy = iy + r0, xx = ix + q0;
        if ((uint)yy < (uint)s.H && (uint)xx < (uint)s.W) v.X = x[xn + xc0 + yy * s.W + xx];
        yy = iy + r1; xx = ix + q1;
        if ((uint)yy < (uint)s.H && (uint)xx < (uint)s.W) v.Y = x[xn + xc1 + yy * s.W + xx];
        yy = iy + r2; xx = ix + q2;
        if ((uint)yy < (uint)s.H && (uint)xx < (uint)s.W) v.Z = x[xn + xc2 + yy * s.W + xx];
        yy = iy + r3; xx = ix + q3;
        if ((uint)yy < (uint)s.H && (uint)xx < (uint)s.W) v.W = x[xn + xc3 + yy * s.W + xx];
        return v;
    }

    /// <summary>Epilogue of the V3 backward-weight: dw[k, j .. j + 4] += v, atomically when the reduction is split.</summary>
    private struct WeightSink : ITileSink
    {
        private readonly ArrayView<float> _dw;
        private readonly ArrayView<Float4> _dw4;
        private readonly int _k, _crs, _row0, _col0;
        private readonly bool _atomic, _vector;

        public WeightSink(ArrayView<float> dw, int k, int crs, int row0, int col0, bool atomic, bool vector)
        {
            _dw = dw; _dw4 = dw.Cast<Float4>(); _k = k; _crs = crs; _row0 = row0; _col0 = col0; _atomic = atomic; _vector = vector;
        }

        public void Row(int row, int col, Float4 v)
        {
            int k = _row0 + row, j = _col0 + col;
            if (k >= _k || j >= _crs) return;
            long e = (long)k * _crs + j;
            if (!_atomic && _vector)
            {
                var old = _dw4[e >> 2];
                _dw4[e >> 2] = new Float4(old.X + v.X, old.Y + v.Y, old.Z + v.Z, old.W + v.W);
                return;
            }
            Add(e, v.X, 0, j);
            Add(e + 1, v.Y, 1, j);
            Add(e + 2, v.Z, 2, j);
            Add(e + 3, v.W, 3, j);
        }

        private readonly void Add(long e, float v, int u, int j)
        {
            if (j + u >= _crs) return;
            if (_atomic) Atomic.Add(ref _dw[e], v);
            else _dw[e] += v;
        }
    }
}
