using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>What the GEMM does to a finished C tile: add a per-row bias (conv channels), a per-column bias
/// (linear outputs), then ReLU. Pointers travel as <see cref="nint"/> so the struct can enter lambdas.</summary>
internal readonly record struct GemmEpilogue(nint RowBias = 0, nint ColBias = 0, bool Relu = false)
{
    public bool IsEmpty => RowBias == 0 && ColBias == 0 && !Relu;
}

/// <summary>Packs op(B)[pc:pc+kc, jc:jc+nc] into ceil(nc/NR) micro-panels of kc x NR floats (element (p, t) at
/// p*NR + t), zero padded past nc. Implemented by structs so the JIT specialises the GEMM loop per source.</summary>
internal unsafe interface IPackB
{
    void Pack(float* dst, int pc, int kc, int jc, int nc);
}

/// <summary>op(B)(p, j) = b[p*RowStride + j*ColStride]: a plain row-major matrix, transposed or not.</summary>
internal readonly unsafe struct StridedB(nint b, long rowStride, long colStride) : IPackB
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(float* dst, int pc, int kc, int jc, int nc)
    {
        const int NR = HostGemmKernels.NR;
        float* b0 = (float*)b;
        for (int jp = 0; jp < nc; jp += NR, dst += (long)kc * NR)
        {
            int w = Math.Min(NR, nc - jp);
            if (colStride == 1)
            {
                // Rows of op(B) are contiguous: copy NR floats per k.
                float* src = b0 + (long)pc * rowStride + jc + jp;
                if (w == NR)
                    for (int p = 0; p < kc; p++, src += rowStride)
                    {
                        Vector256.Store(Vector256.Load(src), dst + p * NR);
                        Vector256.Store(Vector256.Load(src + 8), dst + p * NR + 8);
                    }
                else
                    for (int p = 0; p < kc; p++, src += rowStride)
                    {
                        float* d = dst + p * NR;
                        int t = 0;
                        for (; t < w; t++) d[t] = src[t];
                        for (; t < NR; t++) d[t] = 0f;
                    }
            }
            else
            {
                // Columns of op(B) are contiguous along k (TransB): read each column once, write with stride NR.
                for (int t = 0; t < NR; t++)
                {
                    float* d = dst + t;
                    if (t < w)
                    {
                        float* src = b0 + (long)(jc + jp + t) * colStride + (long)pc * rowStride;
                        for (int p = 0; p < kc; p++) d[p * NR] = src[p * rowStride];
                    }
                    else
                        for (int p = 0; p < kc; p++) d[p * NR] = 0f;
                }
            }
        }
    }
}

/// <summary>
/// The im2col matrix of one image, never materialised: op(B) is (C*R*S, OH*OW) with
/// B(p = (c*R + r)*S + q, j = oy*OW + ox) = x[c, oy*strideH - padH + r, ox*strideW - padW + q] (0 outside).
/// Packing reads it straight from the image (C, H, W), so the conv needs no col buffer at all.
/// </summary>
internal readonly unsafe struct Im2colB(nint image, ConvShape s) : IPackB
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(float* dst, int pc, int kc, int jc, int nc)
    {
        const int NR = HostGemmKernels.NR;
        int ow = s.OutW, h = s.H, w = s.W, rs = s.R * s.S, sw = s.StrideW;
        long hw = (long)h * w;
        float* x = (float*)image;
        // A micro-panel's NR output pixels split into runs that share an output row ("segments");
        // within a segment the input columns advance by strideW, so stride-1 runs are plain copies.
        int* segT = stackalloc int[NR], segLen = stackalloc int[NR], segIy = stackalloc int[NR], segIx = stackalloc int[NR];
        for (int jp = 0; jp < nc; jp += NR, dst += (long)kc * NR)
        {
            int width = Math.Min(NR, nc - jp), nseg = 0;
            for (int t = 0; t < width;)
            {
                int j = jc + jp + t, oy = j / ow, ox = j - oy * ow, len = Math.Min(width - t, ow - ox);
                segT[nseg] = t; segLen[nseg] = len;
                segIy[nseg] = oy * s.StrideH - s.PadH; segIx[nseg] = ox * sw - s.PadW;
                nseg++; t += len;
            }
            int c = pc / rs, rem = pc - c * rs, r = rem / s.S, q = rem - r * s.S;
            for (int p = 0; p < kc; p++)
            {
                float* d = dst + p * NR;
                float* plane = x + c * hw;
                for (int g = 0; g < nseg; g++)
                {
                    float* dg = d + segT[g];
                    int len = segLen[g], iy = segIy[g] + r, ix = segIx[g] + q;
                    if ((uint)iy >= (uint)h) { new Span<float>(dg, len).Clear(); continue; }
                    float* row = plane + (long)iy * w;
                    if (sw == 1)
                    {
                        if (len == NR && ix >= 0 && ix + NR <= w)
                        {
                            Vector256.Store(Vector256.Load(row + ix), dg);
                            Vector256.Store(Vector256.Load(row + ix + 8), dg + 8);
                            continue;
                        }
                        int lo = Math.Clamp(-ix, 0, len), hi = Math.Clamp(w - ix, lo, len);
                        int u = 0;
                        for (; u < lo; u++) dg[u] = 0f;
                        for (; u < hi; u++) dg[u] = row[ix + u];
                        for (; u < len; u++) dg[u] = 0f;
                    }
                    else
                        for (int u = 0; u < len; u++)
                        {
                            int xx = ix + u * sw;
                            dg[u] = (uint)xx < (uint)w ? row[xx] : 0f;
                        }
                }
                for (int t = width; t < NR; t++) d[t] = 0f;
                if (++q == s.S) { q = 0; if (++r == s.R) { r = 0; c++; } }
            }
        }
    }
}

/// <summary>
/// The transposed im2col matrix of one image, for backward-weight's dw += dy · im2col(x)ᵀ: op(B) is (OH*OW, C*R*S)
/// with B(p = oy*OW + ox, j = (c*R + r)*S + q) = x[c, oy*strideH - padH + r, ox*strideW - padW + q] (0 outside).
/// Each panel column j is one filter tap, whose values along p run along input rows: each column is gathered
/// one output row (segment) at a time, stride-1 segments as plain copies, and written with stride NR.
/// </summary>
internal readonly unsafe struct Im2colTransposedB(nint image, ConvShape s) : IPackB
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(float* dst, int pc, int kc, int jc, int nc)
    {
        const int NR = HostGemmKernels.NR;
        int ow = s.OutW, h = s.H, w = s.W, rs = s.R * s.S, sw = s.StrideW;
        long hw = (long)h * w;
        float* x = (float*)image;
        int oy0 = pc / ow, ox0 = pc - oy0 * ow;
        for (int jp = 0; jp < nc; jp += NR, dst += (long)kc * NR)
        {
            int width = Math.Min(NR, nc - jp);
            for (int t = 0; t < NR; t++)
            {
                float* d = dst + t;
                if (t >= width)
                {
                    for (int p = 0; p < kc; p++) d[p * NR] = 0f;
                    continue;
                }
                int j = jc + jp + t, c = j / rs, rem = j - c * rs, r = rem / s.S, q = rem - r * s.S;
                float* plane = x + c * hw;
                int oy = oy0, ox = ox0;
                for (int p = 0; p < kc; oy++, ox = 0)
                {
                    int len = Math.Min(kc - p, ow - ox), iy = oy * s.StrideH - s.PadH + r, ix = ox * sw - s.PadW + q;
                    float* dp = d + (long)p * NR;
                    p += len;
                    if ((uint)iy >= (uint)h)
                    {
                        for (int u = 0; u < len; u++) dp[u * NR] = 0f;
                        continue;
                    }
                    float* row = plane + (long)iy * w;
                    if (sw == 1)
                    {
                        int lo = Math.Clamp(-ix, 0, len), hi = Math.Clamp(w - ix, lo, len);
                        int u = 0;
                        for (; u < lo; u++) dp[u * NR] = 0f;
                        for (; u < hi; u++) dp[u * NR] = row[ix + u];
                        for (; u < len; u++) dp[u * NR] = 0f;
                    }
                    else
                        for (int u = 0; u < len; u++)
                        {
                            int xx = ix + u * sw;
                            dp[u * NR] = (uint)xx < (uint)w ? row[xx] : 0f;
                        }
                }
            }
        }
    }
}

/// <summary>
/// Host SGEMM in the Goto/BLIS structure (Goto and van de Geijn, "Anatomy of high-performance matrix
/// multiplication", ACM TOMS 34(3), 2008; Van Zee and van de Geijn, "BLIS", ACM TOMS 41(3), 2015):
/// alpha·op(A) is packed once into MR-row panels; for each (NC columns, KC depth) block op(B) is packed into
/// NR-column panels in a per-thread buffer; an MR x NR register-blocked micro-kernel walks the MC x KC block
/// of A (kept in L2) against one KC x NR panel of B (kept in L1). Work is split across cores by columns
/// (or rows when C is tall and thin), so tasks never share a C element and need no synchronisation.
/// </summary>
internal static unsafe partial class HostGemmKernels
{
    // 6x16 keeps 12 ymm accumulators + 2 B vectors + 1 A broadcast in AVX2's 16 registers.
    internal const int MR = 6, NR = 16;
    // KC x NR panel of B = 16 KiB (L1 is 32 KiB); MC x KC block of A = 144 KiB (L2 is 512 KiB per core);
    // KC x NC block of B = 4 MiB (L3). These are BLIS's Zen sgemm block sizes; on this shared 2-core VM
    // MC 240 / NC 3072, MC 144 / NC 192, 256 and 512 measured within noise (±20%) of them on VGG16 layers.
    internal const int KC = 256, MC = 144, NC = 4080;

    /// <summary>Below this many FLOPs a GEMM runs on the calling thread: task start-up would cost more.</summary>
    const double ParallelFlops = 4e6;

    internal static int PaddedRows(int m) => (m + MR - 1) / MR * MR;

    /// <summary>Depth of every k-block but the last: K split into equal blocks of at most KC, so K = 576 runs as
    /// 2 x 288 rather than 256 + 256 + 64 (a short last block pays the C load/store for few FMAs).</summary>
    internal static int BlockDepth(int k)
    {
        int blocks = (k + KC - 1) / KC;
        return (k + blocks - 1) / blocks;
    }

    [ThreadStatic] static float[]? t_bBuffer;

    /// <summary>This thread's KC x NC packing buffer for B, pinned and 64-byte aligned; allocated once per thread.</summary>
    static float* ThreadBBuffer()
    {
        t_bBuffer ??= GC.AllocateUninitializedArray<float>(KC * NC + 16, pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref t_bBuffer[0]);
        return (float*)((p + 63) & ~(nint)63);
    }

    /// <summary>
    /// Packs alpha·op(A) (M x K, op(A)(i, p) = a[i*rowStride + p*colStride]) into the micro-kernel's layout:
    /// k-block pc (width kc, blocks of BlockDepth(K)) occupies PaddedRows(M) x kc floats at offset pc*PaddedRows(M); inside it row
    /// panel i/MR starts at i*kc, element (p, r) at p*MR + r. Rows past M are zero.
    /// </summary>
    internal static void PackA(float* dst, float* a, long rowStride, long colStride, int m, int k, float alpha)
    {
        int mPad = PaddedRows(m), panels = mPad / MR, depth = BlockDepth(k), kBlocks = (k + depth - 1) / depth;
        nint dp = (nint)dst, ap = (nint)a;
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void PackOne(int task)
        {
            int kb = task / panels, i = task % panels * MR, pc = kb * depth, kc = Math.Min(depth, k - pc);
            float* d = (float*)dp + (long)pc * mPad + (long)i * kc;
            float* src = (float*)ap + (long)i * rowStride + (long)pc * colStride;
            int rows = Math.Min(MR, m - i);
            for (int r = 0; r < MR; r++)
            {
                float* sr = src + r * rowStride;
                if (r >= rows) { for (int p = 0; p < kc; p++) d[p * MR + r] = 0f; continue; }
                for (int p = 0; p < kc; p++) d[p * MR + r] = alpha * sr[p * colStride];
            }
        }
        int tasks = kBlocks * panels;
        if ((long)m * k < 1 << 18) for (int t = 0; t < tasks; t++) PackOne(t);
        else Parallel.For(0, tasks, HostThreads.Options, PackOne);
    }

    /// <summary>
    /// C[i0:i1, j0:j1] (C has leading dimension ldc) = (pre-packed A) · op(B) + beta·C, then the epilogue.
    /// With beta == 0, C is never read (it may hold garbage or NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Run<TB>(float* aPacked, int m, int k, TB b, int i0, int i1, int j0, int j1,
        float* c, long ldc, float beta, GemmEpilogue e, bool portable) where TB : struct, IPackB
    {
        int mPad = PaddedRows(m), depth = BlockDepth(k);
        float* bBuf = ThreadBBuffer();
        for (int jc = j0; jc < j1; jc += NC)
        {
            int nc = Math.Min(NC, j1 - jc);
            for (int pc = 0; pc < k; pc += depth)
            {
                int kc = Math.Min(depth, k - pc);
                b.Pack(bBuf, pc, kc, jc, nc);
                bool first = pc == 0, last = pc + kc == k, loadC = !first || beta != 0f;
                float scale = first ? beta : 1f;
                float* aBlock = aPacked + (long)pc * mPad;
                for (int ic = i0; ic < i1; ic += MC)
                {
                    int mc = Math.Min(MC, i1 - ic);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        float* bp = bBuf + (long)jr * kc;
                        int nv = Math.Min(NR, nc - jr), col = jc + jr;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            int row = ic + ir, mv = Math.Min(MR, Math.Min(m, i1) - row);
                            float* ct = c + row * ldc + col;
                            if (portable || !Vector256.IsHardwareAccelerated)
                                KernelPortable(kc, aBlock + (long)row * kc, bp, ct, ldc, mv, nv, loadC, scale, last, e, row, col);
                            else
                                Kernel6x16(kc, aBlock + (long)row * kc, bp, ct, ldc, mv, nv, loadC, scale, last, e, row, col);
                        }
                    }
                }
            }
        }
    }

    static readonly GemmEpilogue NoEpilogue = default;

    /// <summary>
    /// One micro-tile for callers that lay out B panels themselves (Winograd): C[0:mv, 0:nv] (leading dimension
    /// ldc) = a packed A panel (kc x MR) · a B panel (kc x NR), added to C when <paramref name="accumulate"/>.
    /// </summary>
    internal static void MicroTile(int kc, float* a, float* b, float* c, long ldc, int mv, int nv, bool accumulate, bool portable)
    {
        if (portable || !Vector256.IsHardwareAccelerated)
            KernelPortable(kc, a, b, c, ldc, mv, nv, accumulate, 1f, false, NoEpilogue, 0, 0);
        else
            Kernel6x16(kc, a, b, c, ldc, mv, nv, accumulate, 1f, false, NoEpilogue, 0, 0);
    }

    /// <summary>C = alpha·op(A)·op(B) + beta·C then the epilogue, for raw row-major pointers; parallel over cores.</summary>
    /// <param name="thinV1">Few rows times Bᵀ through the first thin kernel (<see cref="ThinTransB"/>) instead of
    /// <see cref="ThinTransB_V2"/>: kept for tests and benchmarks.</param>
    internal static void Gemm(float* c, float* a, float* b, GemmShape s, GemmEpilogue e, bool portable = false, bool thinV1 = false)
    {
        int m = s.M, n = s.N, k = s.K;
        if (m <= 0 || n <= 0) return;
        long lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        if (k <= 0) { ScaleAndEpilogue(c, m, n, ldc, s.Beta, e); return; }
        if (s.TransB && m <= ThinRows && !portable && Vector256.IsHardwareAccelerated)
        {
            if (thinV1) ThinTransB(c, a, b, s, e);
            else ThinTransB_V2(c, a, b, s, e);
            return;
        }
        int mPad = PaddedRows(m);
        float[] aBuf = ArrayPool<float>.Shared.Rent(checked((int)((long)mPad * k + 16)));
        try
        {
            fixed (float* aRaw = aBuf)
            {
                float* ap = (float*)(((nint)aRaw + 63) & ~(nint)63);
                PackA(ap, a, s.TransA ? 1 : lda, s.TransA ? lda : 1, m, k, s.Alpha);
                var bSrc = new StridedB((nint)b, s.TransB ? 1 : ldb, s.TransB ? ldb : 1);
                Split(m, n, s.Flops, out int rowTasks, out int colTasks);
                if (rowTasks * colTasks == 1)
                {
                    Run(ap, m, k, bSrc, 0, m, 0, n, c, ldc, s.Beta, e, portable);
                    return;
                }
                nint app = (nint)ap, cp = (nint)c;
                float beta = s.Beta;
                Parallel.For(0, rowTasks * colTasks, HostThreads.Options, t =>
                {
                    Range(m, MR, rowTasks, t / colTasks, out int i0, out int i1);
                    Range(n, NR, colTasks, t % colTasks, out int j0, out int j1);
                    if (i0 < i1 && j0 < j1)
                        Run((float*)app, m, k, bSrc, i0, i1, j0, j1, (float*)cp, ldc, beta, e, portable);
                });
            }
        }
        finally { ArrayPool<float>.Shared.Return(aBuf); }
    }

    /// <summary>Up to this many rows of C, op(B) = B^T goes through <see cref="ThinTransB"/>.</summary>
    internal const int ThinRows = 32;
    // K-chunk of the thin path: 32 rows x 2048 floats of A = 256 KiB stay in L2 while B rows stream past.
    const int ThinKc = 2048, ThinCols = 32;

    /// <summary>
    /// Version 1 of the thin path (kept for tests and benchmarks; <see cref="ThinTransB_V2"/> is the default).
    /// C (M x N) = alpha·op(A)·B^T + beta·C for few rows (a linear layer's batch: x (M, In) times W (Out, In)^T).
    /// Packing B would read each weight once and write it again for only M uses, and its k-panels read 16 rows
    /// 1 KiB at a time; here every row of B streams once, contiguously, against 8 rows of A held in L2:
    /// 8 dot products of 8 lanes each, summed across lanes at the end of each K-chunk.
    /// </summary>
    static void ThinTransB(float* c, float* a, float* b, GemmShape s, GemmEpilogue e)
    {
        int m = s.M, n = s.N, k = s.K, mPad = (m + 7) / 8 * 8;
        long lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        // alpha·op(A) copied to (mPad, K) row-major, zero rows past M.
        float[] aBuf = ArrayPool<float>.Shared.Rent(checked(mPad * k));
        try
        {
            fixed (float* ap = aBuf)
            {
                for (int i = 0; i < mPad; i++)
                    for (int p = 0; p < k; p++)
                        ap[(long)i * k + p] = i >= m ? 0f : s.Alpha * (s.TransA ? a[p * lda + i] : a[i * lda + p]);
                nint app = (nint)ap, bp = (nint)b, cp = (nint)c;
                float beta = s.Beta;
                int tasks = (n + ThinCols - 1) / ThinCols;
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                void Task(int t)
                {
                    int j0 = t * ThinCols, cols = Math.Min(ThinCols, n - j0);
                    float* acc = stackalloc float[ThinRows * ThinCols]; // partial sums (mPad, cols), row stride ThinCols
                    new Span<float>(acc, ThinRows * ThinCols).Clear();
                    float* aa = (float*)app;
                    for (int pc = 0; pc < k; pc += ThinKc)
                    {
                        int kc = Math.Min(ThinKc, k - pc), kv = kc & ~7;
                        for (int jj = 0; jj < cols; jj++)
                        {
                            // One K-chunk of B's row j (8 KiB) stays in L1 while every 8-row group of A passes it.
                            float* bj = (float*)bp + (long)(j0 + jj) * ldb + pc;
                            for (int i0 = 0; i0 < mPad; i0 += 8)
                            {
                                float* a0 = aa + (long)i0 * k + pc;
                                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default,
                                    s4 = default, s5 = default, s6 = default, s7 = default;
                                for (int p = 0; p < kv; p += 8)
                                {
                                    var w = Vector256.Load(bj + p);
                                    float* ar = a0 + p;
                                    s0 = MulAdd(Vector256.Load(ar), w, s0);
                                    s1 = MulAdd(Vector256.Load(ar + k), w, s1);
                                    s2 = MulAdd(Vector256.Load(ar + 2L * k), w, s2);
                                    s3 = MulAdd(Vector256.Load(ar + 3L * k), w, s3);
                                    s4 = MulAdd(Vector256.Load(ar + 4L * k), w, s4);
                                    s5 = MulAdd(Vector256.Load(ar + 5L * k), w, s5);
                                    s6 = MulAdd(Vector256.Load(ar + 6L * k), w, s6);
                                    s7 = MulAdd(Vector256.Load(ar + 7L * k), w, s7);
                                }
                                float* accj = acc + i0 * ThinCols + jj;
                                accj[0] += Vector256.Sum(s0); accj[ThinCols] += Vector256.Sum(s1);
                                accj[2 * ThinCols] += Vector256.Sum(s2); accj[3 * ThinCols] += Vector256.Sum(s3);
                                accj[4 * ThinCols] += Vector256.Sum(s4); accj[5 * ThinCols] += Vector256.Sum(s5);
                                accj[6 * ThinCols] += Vector256.Sum(s6); accj[7 * ThinCols] += Vector256.Sum(s7);
                                for (int p = kv; p < kc; p++)
                                    for (int r = 0; r < 8; r++) accj[r * ThinCols] += a0[r * (long)k + p] * bj[p];
                            }
                        }
                    }
                    for (int r = 0; r < m; r++)
                        for (int jj = 0; jj < cols; jj++)
                        {
                            float* ce = (float*)cp + r * ldc + j0 + jj;
                            float v = acc[r * ThinCols + jj];
                            if (beta != 0f) v += beta * *ce;
                            *ce = Finish(v, e, r, j0 + jj);
                        }
                }
                if (s.Flops < ParallelFlops || HostThreads.Count == 1) for (int t = 0; t < tasks; t++) Task(t);
                else Parallel.For(0, tasks, HostThreads.Options, Task);
            }
        }
        finally { ArrayPool<float>.Shared.Return(aBuf); }
    }

    // ThinTransB_V2: B rows per task block, and the K-chunk after which the register sums are folded into acc.
    const int ThinV2BlockRows = 12, ThinV2Kc = 512;
    // How far ahead Thin4x3 prefetches each B row (prefetches never fault, so reading past a row is harmless). Thin1x3
    // (batch 1) streams faster without: it spends fewer cycles per B line, so the hardware prefetcher keeps up.
    const int ThinPrefetchFloats = 256;

    /// <summary>
    /// Version 2 of C (M x N) = alpha·op(A)·B^T + beta·C for few rows (a linear layer: x (M, In) times W (Out, In)^T;
    /// VGG16's fc6 streams 411 MB of weights for 1 to 8 rows of x, so the product is bound by memory bandwidth).
    /// <see cref="ThinTransB"/> (V1) padded A to 8 rows (at batch 1, 7 of 8 dot products and A-streams were zero rows)
    /// and read 8 A rows from L2 for each B vector. Here A keeps its M rows; a micro-kernel takes 4 rows of A against 3
    /// rows of B (12 register sums, 7 loads per 12 FMAs), single rows of A against 3 rows of B for M mod 4. A task owns
    /// a block of <see cref="ThinV2BlockRows"/> rows of B, walked chunk by chunk along K (<see cref="ThinV2Kc"/>): the
    /// block's chunk (24 KiB) is read from memory once, every row group of A (M x 2 KiB of A, in L1 at M = 8) passes over it,
    /// and each B row still advances as one sequential stream. The register sums are folded per chunk, so the
    /// summation order is blocked like V1's.
    /// </summary>
    static void ThinTransB_V2(float* c, float* a, float* b, GemmShape s, GemmEpilogue e)
    {
        int m = s.M, n = s.N, k = s.K;
        long lda = s.LdaOrDefault, ldb = s.LdbOrDefault, ldc = s.LdcOrDefault;
        // alpha·op(A) copied to (M, kPad) row-major, zero past K, so the micro-kernels run whole vectors; B's last
        // partial vector is read through a masked copy instead.
        int kPad = (k + 7) / 8 * 8;
        float[] aBuf = ArrayPool<float>.Shared.Rent(checked(m * kPad + 16));
        try
        {
            fixed (float* aRaw = aBuf)
            {
                float* ap0 = (float*)(((nint)aRaw + 31) & ~(nint)31);
                for (int i = 0; i < m; i++)
                {
                    float* dst = ap0 + (long)i * kPad;
                    if (!s.TransA && s.Alpha == 1f) new ReadOnlySpan<float>(a + i * lda, k).CopyTo(new Span<float>(dst, k));
                    else for (int p = 0; p < k; p++) dst[p] = s.Alpha * (s.TransA ? a[p * lda + i] : a[i * lda + p]);
                    for (int p = k; p < kPad; p++) dst[p] = 0f;
                }
                nint app = (nint)ap0, bp = (nint)b, cp = (nint)c;
                float beta = s.Beta;
                int blocks = (n + ThinV2BlockRows - 1) / ThinV2BlockRows;
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                void Block(int blk)
                {
                    int j0 = blk * ThinV2BlockRows, rows = Math.Min(ThinV2BlockRows, n - j0);
                    float* acc = stackalloc float[ThinRows * ThinV2BlockRows]; // (M, rows), row stride ThinV2BlockRows
                    new Span<float>(acc, ThinRows * ThinV2BlockRows).Clear();
                    float* tail = stackalloc float[3 * 8];                    // B's last partial vector, zero padded
                    float* aa = (float*)app;
                    for (int pc = 0; pc < k; pc += ThinV2Kc)
                    {
                        int kc = Math.Min(ThinV2Kc, k - pc), kv = kc & ~7;
                        for (int jg = 0; jg < rows; jg += 3)
                        {
                            // A group of 3 B rows; past the block's end the last row is repeated and its sums dropped.
                            int g = Math.Min(3, rows - jg);
                            float* b0 = (float*)bp + (j0 + jg) * ldb + pc;
                            float* b1 = g > 1 ? b0 + ldb : b0, b2 = g > 2 ? b1 + ldb : b1;
                            int tailLen = kc - kv;
                            if (tailLen > 0)
                            {
                                new Span<float>(tail, 24).Clear();
                                for (int p = 0; p < tailLen; p++) { tail[p] = b0[kv + p]; tail[8 + p] = b1[kv + p]; tail[16 + p] = b2[kv + p]; }
                            }
                            float* accg = acc + jg;
                            int i = 0;
                            for (; i + 4 <= m; i += 4)
                                Thin4x3(aa + (long)i * kPad + pc, kPad, b0, b1, b2, kv, tailLen > 0 ? tail : null,
                                    accg + i * ThinV2BlockRows, ThinV2BlockRows, g);
                            for (; i < m; i++)
                                Thin1x3(aa + (long)i * kPad + pc, b0, b1, b2, kv, tailLen > 0 ? tail : null,
                                    accg + i * ThinV2BlockRows, g);
                        }
                    }
                    for (int r = 0; r < m; r++)
                        for (int jj = 0; jj < rows; jj++)
                        {
                            float* ce = (float*)cp + r * ldc + j0 + jj;
                            float v = acc[r * ThinV2BlockRows + jj];
                            if (beta != 0f) v += beta * *ce;
                            *ce = Finish(v, e, r, j0 + jj);
                        }
                }
                if (s.Flops < ParallelFlops || HostThreads.Count == 1) for (int t = 0; t < blocks; t++) Block(t);
                else Parallel.For(0, blocks, HostThreads.Options, Block);
            }
        }
        finally { ArrayPool<float>.Shared.Return(aBuf); }
    }

    /// <summary>acc[r·accStride + j] += Σ_p a[r·lda + p]·b_j[p] for 4 rows of A and the first g of 3 B rows, p over kv
    /// whole vectors, then the zero-padded tail vector (tail[8j ..], A zero past K) when there is one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Thin4x3(float* a, long lda, float* b0, float* b1, float* b2, int kv, float* tail, float* acc, int accStride, int g)
    {
        Vector256<float> s00 = default, s01 = default, s02 = default, s10 = default, s11 = default, s12 = default,
            s20 = default, s21 = default, s22 = default, s30 = default, s31 = default, s32 = default;
        float* a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda;
        for (int p = 0; p < kv; p += 8)
        {
            if (Sse.IsSupported && (p & 15) == 0)
            {
                // B streams from memory, 3 rows (and 12 per task) at once: ask for each row's line 1 KiB ahead,
                // which the hardware prefetcher alone did not keep up with.
                Sse.Prefetch0(b0 + p + ThinPrefetchFloats); Sse.Prefetch0(b1 + p + ThinPrefetchFloats); Sse.Prefetch0(b2 + p + ThinPrefetchFloats);
            }
            var w0 = Vector256.Load(b0 + p); var w1 = Vector256.Load(b1 + p); var w2 = Vector256.Load(b2 + p);
            var x = Vector256.Load(a + p); s00 = MulAdd(x, w0, s00); s01 = MulAdd(x, w1, s01); s02 = MulAdd(x, w2, s02);
            x = Vector256.Load(a1 + p); s10 = MulAdd(x, w0, s10); s11 = MulAdd(x, w1, s11); s12 = MulAdd(x, w2, s12);
            x = Vector256.Load(a2 + p); s20 = MulAdd(x, w0, s20); s21 = MulAdd(x, w1, s21); s22 = MulAdd(x, w2, s22);
            x = Vector256.Load(a3 + p); s30 = MulAdd(x, w0, s30); s31 = MulAdd(x, w1, s31); s32 = MulAdd(x, w2, s32);
        }
        if (tail != null)
        {
            var w0 = Vector256.Load(tail); var w1 = Vector256.Load(tail + 8); var w2 = Vector256.Load(tail + 16);
            var x = Vector256.Load(a + kv); s00 = MulAdd(x, w0, s00); s01 = MulAdd(x, w1, s01); s02 = MulAdd(x, w2, s02);
            x = Vector256.Load(a1 + kv); s10 = MulAdd(x, w0, s10); s11 = MulAdd(x, w1, s11); s12 = MulAdd(x, w2, s12);
            x = Vector256.Load(a2 + kv); s20 = MulAdd(x, w0, s20); s21 = MulAdd(x, w1, s21); s22 = MulAdd(x, w2, s22);
            x = Vector256.Load(a3 + kv); s30 = MulAdd(x, w0, s30); s31 = MulAdd(x, w1, s31); s32 = MulAdd(x, w2, s32);
        }
        Fold3(acc, s00, s01, s02, g); Fold3(acc + accStride, s10, s11, s12, g);
        Fold3(acc + 2 * accStride, s20, s21, s22, g); Fold3(acc + 3 * accStride, s30, s31, s32, g);
    }

    /// <summary><see cref="Thin4x3"/> for one row of A.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Thin1x3(float* a, float* b0, float* b1, float* b2, int kv, float* tail, float* acc, int g)
    {
        // Two sums per B row so that consecutive FMAs into one register are 2 iterations apart (FMA latency).
        Vector256<float> s0 = default, s1 = default, s2 = default, t0 = default, t1 = default, t2 = default;
        int p = 0;
        for (; p + 16 <= kv; p += 16)
        {
            var x = Vector256.Load(a + p); var y = Vector256.Load(a + p + 8);
            s0 = MulAdd(x, Vector256.Load(b0 + p), s0); t0 = MulAdd(y, Vector256.Load(b0 + p + 8), t0);
            s1 = MulAdd(x, Vector256.Load(b1 + p), s1); t1 = MulAdd(y, Vector256.Load(b1 + p + 8), t1);
            s2 = MulAdd(x, Vector256.Load(b2 + p), s2); t2 = MulAdd(y, Vector256.Load(b2 + p + 8), t2);
        }
        if (p < kv)
        {
            var x = Vector256.Load(a + p);
            s0 = MulAdd(x, Vector256.Load(b0 + p), s0); s1 = MulAdd(x, Vector256.Load(b1 + p), s1); s2 = MulAdd(x, Vector256.Load(b2 + p), s2);
        }
        if (tail != null)
        {
            var x = Vector256.Load(a + kv);
            t0 = MulAdd(x, Vector256.Load(tail), t0); t1 = MulAdd(x, Vector256.Load(tail + 8), t1); t2 = MulAdd(x, Vector256.Load(tail + 16), t2);
        }
        Fold3(acc, s0 + t0, s1 + t1, s2 + t2, g);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Fold3(float* acc, Vector256<float> s0, Vector256<float> s1, Vector256<float> s2, int g)
    {
        acc[0] += Vector256.Sum(s0);
        if (g > 1) acc[1] += Vector256.Sum(s1);
        if (g > 2) acc[2] += Vector256.Sum(s2);
    }

    /// <summary>
    /// Chooses how many row and column slices of C become parallel tasks. Columns are preferred (A is packed
    /// once and shared, so column tasks do no redundant work); rows only when C is too narrow to feed the cores.
    /// A few tasks per core let the scheduler balance when other processes steal a core.
    /// </summary>
    internal static void Split(int m, int n, double flops, out int rowTasks, out int colTasks)
    {
        int threads = HostThreads.Count;
        rowTasks = colTasks = 1;
        if (flops < ParallelFlops || threads == 1) return;
        int colPanels = (n + NR - 1) / NR, rowPanels = (m + MR - 1) / MR, want = 2 * threads;
        if (colPanels >= want) colTasks = Math.Min(colPanels, want);
        else if (rowPanels >= want) rowTasks = Math.Min(rowPanels, want);
        else { colTasks = Math.Max(1, colPanels); rowTasks = Math.Max(1, Math.Min(rowPanels, want / colTasks)); }
    }

    /// <summary>Slice <paramref name="index"/> of <paramref name="count"/> over [0, total), boundaries on multiples of <paramref name="unit"/>.</summary>
    internal static void Range(int total, int unit, int count, int index, out int start, out int end)
    {
        int units = (total + unit - 1) / unit;
        start = Math.Min(total, (int)((long)units * index / count) * unit);
        end = Math.Min(total, (int)((long)units * (index + 1) / count) * unit);
    }

    static void ScaleAndEpilogue(float* c, int m, int n, long ldc, float beta, GemmEpilogue e)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float* ce = c + i * ldc + j;
                float v = beta == 0f ? 0f : beta * *ce;
                *ce = Finish(v, e, i, j);
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Finish(float v, in GemmEpilogue e, int row, int col)
    {
        if (e.RowBias != 0) v += ((float*)e.RowBias)[row];
        if (e.ColBias != 0) v += ((float*)e.ColBias)[col];
        return e.Relu && v < 0f ? 0f : v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> MulAdd(Vector256<float> a, Vector256<float> b, Vector256<float> acc)
        => Fma.IsSupported ? Fma.MultiplyAdd(a, b, acc) : a * b + acc;

    /// <summary>
    /// The 6 x 16 micro-kernel: acc (6 x 16, in 12 registers) = sum over kc of a panel column (6 broadcasts)
    /// times a B panel row (2 vectors), then the tile of C gets (beta·C or C) + acc, bias and ReLU.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel6x16(int kc, float* a, float* b, float* c, long ldc, int mv, int nv,
        bool loadC, float scale, bool last, in GemmEpilogue e, int row, int col)
    {
        if (Sse.IsSupported)
        {
            // The C tile is touched only after kc iterations: start its 6 rows (2 lines each when unaligned)
            // on their way now, so the epilogue does not stall on misses. Prefetches never fault.
            for (int r = 0; r < MR; r++)
            {
                Sse.Prefetch0(c + r * ldc);
                Sse.Prefetch0(c + r * ldc + NR - 1);
            }
        }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]); c00 = MulAdd(a0, b0, c00); c01 = MulAdd(a0, b1, c01);
            var a1 = Vector256.Create(a[1]); c10 = MulAdd(a1, b0, c10); c11 = MulAdd(a1, b1, c11);
            var a2 = Vector256.Create(a[2]); c20 = MulAdd(a2, b0, c20); c21 = MulAdd(a2, b1, c21);
            var a3 = Vector256.Create(a[3]); c30 = MulAdd(a3, b0, c30); c31 = MulAdd(a3, b1, c31);
            var a4 = Vector256.Create(a[4]); c40 = MulAdd(a4, b0, c40); c41 = MulAdd(a4, b1, c41);
            var a5 = Vector256.Create(a[5]); c50 = MulAdd(a5, b0, c50); c51 = MulAdd(a5, b1, c51);
            a += MR; b += NR;
        }
        StoreTile(c, ldc, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, mv, nv, loadC, scale, last, e, row, col);
    }

    /// <summary>
    /// The micro-kernels' epilogue: the 6 x 16 accumulators into C's tile (loadC: onto beta·C or C), with the row and
    /// column biases and ReLU on the last k-block; a tile cut by the matrix's edge goes through a stack copy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreTile(float* c, long ldc, Vector256<float> c00, Vector256<float> c01, Vector256<float> c10, Vector256<float> c11,
        Vector256<float> c20, Vector256<float> c21, Vector256<float> c30, Vector256<float> c31, Vector256<float> c40, Vector256<float> c41,
        Vector256<float> c50, Vector256<float> c51, int mv, int nv, bool loadC, float scale, bool last, in GemmEpilogue e, int row, int col)
    {
        if (mv == MR && nv == NR)
        {
            var colBias0 = Vector256<float>.Zero;
            var colBias1 = Vector256<float>.Zero;
            if (last && e.ColBias != 0)
            {
                colBias0 = Vector256.Load((float*)e.ColBias + col);
                colBias1 = Vector256.Load((float*)e.ColBias + col + 8);
            }
            StoreRow(c, c00, c01, loadC, scale, last, e, row, colBias0, colBias1);
            StoreRow(c + ldc, c10, c11, loadC, scale, last, e, row + 1, colBias0, colBias1);
            StoreRow(c + 2 * ldc, c20, c21, loadC, scale, last, e, row + 2, colBias0, colBias1);
            StoreRow(c + 3 * ldc, c30, c31, loadC, scale, last, e, row + 3, colBias0, colBias1);
            StoreRow(c + 4 * ldc, c40, c41, loadC, scale, last, e, row + 4, colBias0, colBias1);
            StoreRow(c + 5 * ldc, c50, c51, loadC, scale, last, e, row + 5, colBias0, colBias1);
            return;
        }
        float* t = stackalloc float[MR * NR];
        Vector256.Store(c00, t); Vector256.Store(c01, t + 8);
        Vector256.Store(c10, t + 16); Vector256.Store(c11, t + 24);
        Vector256.Store(c20, t + 32); Vector256.Store(c21, t + 40);
        Vector256.Store(c30, t + 48); Vector256.Store(c31, t + 56);
        Vector256.Store(c40, t + 64); Vector256.Store(c41, t + 72);
        Vector256.Store(c50, t + 80); Vector256.Store(c51, t + 88);
        StoreEdge(t, c, ldc, mv, nv, loadC, scale, last, e, row, col);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRow(float* cr, Vector256<float> x0, Vector256<float> x1, bool loadC, float scale, bool last,
        in GemmEpilogue e, int row, Vector256<float> colBias0, Vector256<float> colBias1)
    {
        if (loadC)
        {
            var o0 = Vector256.Load(cr);
            var o1 = Vector256.Load(cr + 8);
            if (scale != 1f) { var sv = Vector256.Create(scale); o0 *= sv; o1 *= sv; }
            x0 += o0; x1 += o1;
        }
        if (last)
        {
            if (e.RowBias != 0) { var rb = Vector256.Create(((float*)e.RowBias)[row]); x0 += rb; x1 += rb; }
            x0 += colBias0; x1 += colBias1;
            if (e.Relu)
            {
                // Same rule as the scalar specification (v < 0 ? 0 : v), so NaN passes through.
                var z = Vector256<float>.Zero;
                x0 = Vector256.ConditionalSelect(Vector256.LessThan(x0, z), z, x0);
                x1 = Vector256.ConditionalSelect(Vector256.LessThan(x1, z), z, x1);
            }
        }
        Vector256.Store(x0, cr);
        Vector256.Store(x1, cr + 8);
    }

    /// <summary>Writes the valid mv x nv part of an accumulator tile t (MR x NR) at the matrix edge.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void StoreEdge(float* t, float* c, long ldc, int mv, int nv, bool loadC, float scale, bool last,
        in GemmEpilogue e, int row, int col)
    {
        for (int r = 0; r < mv; r++)
            for (int j = 0; j < nv; j++)
            {
                float* ce = c + r * ldc + j;
                float v = t[r * NR + j];
                if (loadC) v += scale == 1f ? *ce : scale * *ce;
                *ce = last ? Finish(v, e, row + r, col + j) : v;
            }
    }

    /// <summary>
    /// The same tile with <see cref="Vector{T}"/> of any width (4, 8 or 16 lanes divide NR): the fallback for
    /// CPUs without 256-bit SIMD (e.g. NEON), and a second implementation the tests compare against.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KernelPortable(int kc, float* a, float* b, float* c, long ldc, int mv, int nv,
        bool loadC, float scale, bool last, in GemmEpilogue e, int row, int col)
    {
        int lanes = Vector<float>.Count;
        float* t = stackalloc float[MR * NR];
        for (int j = 0; j < NR; j += lanes)
        {
            Vector<float> r0 = default, r1 = default, r2 = default, r3 = default, r4 = default, r5 = default;
            float* ap = a, bp = b + j;
            for (int p = 0; p < kc; p++, ap += MR, bp += NR)
            {
                var bv = Vector.Load(bp);
                r0 += new Vector<float>(ap[0]) * bv; r1 += new Vector<float>(ap[1]) * bv;
                r2 += new Vector<float>(ap[2]) * bv; r3 += new Vector<float>(ap[3]) * bv;
                r4 += new Vector<float>(ap[4]) * bv; r5 += new Vector<float>(ap[5]) * bv;
            }
            Vector.Store(r0, t + j); Vector.Store(r1, t + NR + j); Vector.Store(r2, t + 2 * NR + j);
            Vector.Store(r3, t + 3 * NR + j); Vector.Store(r4, t + 4 * NR + j); Vector.Store(r5, t + 5 * NR + j);
        }
        StoreEdge(t, c, ldc, mv, nv, loadC, scale, last, e, row, col);
    }
}
