using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Tp7.Engine.Kernels;

/// <summary>
/// The im2col matrix of the whole batch, never materialised: op(B) is (C*R*S, N*OH*OW) with
/// B(p = (c*R + r)*S + q, j = n*OH*OW + oy*OW + ox) = x[n, c, oy*strideH - padH + r, ox*strideW - padW + q] (0 outside).
/// Like <see cref="Im2colB"/> but a panel's columns may span images, so one GEMM covers the batch and the weights
/// are streamed once per call instead of once per image; stride-2 runs inside a row are de-interleaved 8 at a time.
/// </summary>
internal readonly unsafe struct Im2colBatchB(nint images, ConvShape s) : IPackB
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(float* dst, int pc, int kc, int jc, int nc)
    {
        const int NR = HostGemmKernels.NR;
        int ow = s.OutW, h = s.H, w = s.W, rs = s.R * s.S, sw = s.StrideW, pixels = s.OutH * s.OutW;
        long hw = (long)h * w, imageIn = s.C * hw;
        float* x = (float*)images;
        bool avx2 = Avx2.IsSupported;
        // A micro-panel's NR columns split into runs that share an output row of one image ("segments").
        int* segT = stackalloc int[NR], segLen = stackalloc int[NR], segIy = stackalloc int[NR], segIx = stackalloc int[NR];
        long* segBase = stackalloc long[NR];
        for (int jp = 0; jp < nc; jp += NR, dst += (long)kc * NR)
        {
            int width = Math.Min(NR, nc - jp), nseg = 0;
            for (int t = 0; t < width;)
            {
                int j = jc + jp + t, img = j / pixels, pix = j - img * pixels, oy = pix / ow, ox = pix - oy * ow;
                int len = Math.Min(width - t, ow - ox);
                segT[nseg] = t; segLen[nseg] = len; segBase[nseg] = img * imageIn;
                segIy[nseg] = oy * s.StrideH - s.PadH; segIx[nseg] = ox * sw - s.PadW;
                nseg++; t += len;
            }
            int c = pc / rs, rem = pc - c * rs, r = rem / s.S, q = rem - r * s.S;
            for (int p = 0; p < kc; p++)
            {
                float* d = dst + p * NR;
                for (int g = 0; g < nseg; g++)
                {
                    float* dg = d + segT[g];
                    int len = segLen[g], iy = segIy[g] + r, ix = segIx[g] + q;
                    if ((uint)iy >= (uint)h) { new Span<float>(dg, len).Clear(); continue; }
                    float* row = x + segBase[g] + c * hw + (long)iy * w;
                    int u = 0;
                    if (sw == 1)
                    {
                        if (len == NR && ix >= 0 && ix + NR <= w)
                        {
                            Vector256.Store(Vector256.Load(row + ix), dg);
                            Vector256.Store(Vector256.Load(row + ix + 8), dg + 8);
                            continue;
                        }
                        int lo = Math.Clamp(-ix, 0, len), hi = Math.Clamp(w - ix, lo, len);
                        for (; u < lo; u++) dg[u] = 0f;
                        for (; u < hi; u++) dg[u] = row[ix + u];
                        for (; u < len; u++) dg[u] = 0f;
                        continue;
                    }
                    if (sw == 2 && avx2 && ix >= 0)
                        // Even elements of 16 consecutive inputs; the loads stay inside the row (ix + 2u + 16 ≤ w).
                        for (; u + 8 <= len && ix + 2 * u + 16 <= w; u += 8)
                        {
                            var v0 = Avx.LoadVector256(row + ix + 2 * u);
                            var v1 = Avx.LoadVector256(row + ix + 2 * u + 8);
                            var even = Avx.Shuffle(v0, v1, 0b10_00_10_00); // per 128-bit lane: v0[0], v0[2], v1[0], v1[2]
                            Avx.Store(dg + u, Avx2.Permute4x64(even.AsDouble(), 0b11_01_10_00).AsSingle());
                        }
                    for (; u < len; u++)
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

internal static unsafe partial class HostGemmKernels
{
    /// <summary>
    /// C[i0:i1, j0:j1] (leading dimension ldc) = A · op(B), then the epilogue, with A (M x K) row-major and read in
    /// place (leading dimension lda): no packed copy of A. Inference convolutions call this once per layer with the
    /// weights as A, where packing them would cost about as much as the GEMM at batch 1. The micro-kernel broadcasts
    /// from 6 rows of A, each read sequentially, so every cache line of A it touches is used whole.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RunRowMajorA<TB>(float* a, long lda, int m, int k, TB b, int i0, int i1, int j0, int j1,
        float* c, long ldc, GemmEpilogue e) where TB : struct, IPackB
    {
        int depth = BlockDepth(k);
        float* bBuf = ThreadBBuffer();
        bool vec = Vector256.IsHardwareAccelerated;
        for (int jc = j0; jc < j1; jc += NC)
        {
            int nc = Math.Min(NC, j1 - jc);
            for (int pc = 0; pc < k; pc += depth)
            {
                int kc = Math.Min(depth, k - pc);
                b.Pack(bBuf, pc, kc, jc, nc);
                bool first = pc == 0, last = pc + kc == k;
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
                            float* ar = a + row * lda + pc;
                            if (vec)
                                Kernel6x16RowMajorA(kc, ar, lda, bp, ct, ldc, mv, nv, !first, last, e, row, col);
                            else
                                KernelPortableRowMajorA(kc, ar, lda, bp, ct, ldc, mv, nv, !first, last, e, row, col);
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// <see cref="Kernel6x16"/> with A read in place: rows r of the tile at a + r·lda, consecutive k at consecutive
    /// addresses. Rows past mv point at row 0 (their results are dropped by the edge store), so no read leaves A.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel6x16RowMajorA(int kc, float* a, long lda, float* b, float* c, long ldc, int mv, int nv,
        bool loadC, bool last, in GemmEpilogue e, int row, int col)
    {
        float* a0 = a, a1 = mv > 1 ? a + lda : a, a2 = mv > 2 ? a + 2 * lda : a,
            a3 = mv > 3 ? a + 3 * lda : a, a4 = mv > 4 ? a + 4 * lda : a, a5 = mv > 5 ? a + 5 * lda : a;
        if (Sse.IsSupported)
            for (int r = 0; r < MR; r++)
            {
                Sse.Prefetch0(c + r * ldc);
                Sse.Prefetch0(c + r * ldc + NR - 1);
            }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var v = Vector256.Create(a0[p]); c00 = MulAdd(v, b0, c00); c01 = MulAdd(v, b1, c01);
            v = Vector256.Create(a1[p]); c10 = MulAdd(v, b0, c10); c11 = MulAdd(v, b1, c11);
            v = Vector256.Create(a2[p]); c20 = MulAdd(v, b0, c20); c21 = MulAdd(v, b1, c21);
            v = Vector256.Create(a3[p]); c30 = MulAdd(v, b0, c30); c31 = MulAdd(v, b1, c31);
            v = Vector256.Create(a4[p]); c40 = MulAdd(v, b0, c40); c41 = MulAdd(v, b1, c41);
            v = Vector256.Create(a5[p]); c50 = MulAdd(v, b0, c50); c51 = MulAdd(v, b1, c51);
            b += NR;
        }
        StoreTile(c, ldc, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, mv, nv, loadC, 1f, last, e, row, col);
    }

    /// <summary><see cref="KernelPortable"/> with A read in place (rows past mv read row 0, dropped at the store).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KernelPortableRowMajorA(int kc, float* a, long lda, float* b, float* c, long ldc, int mv, int nv,
        bool loadC, bool last, in GemmEpilogue e, int row, int col)
    {
        int lanes = System.Numerics.Vector<float>.Count;
        float* t = stackalloc float[MR * NR];
        for (int r = 0; r < MR; r++)
        {
            float* ar = r < mv ? a + r * lda : a;
            for (int j = 0; j < NR; j += lanes)
            {
                System.Numerics.Vector<float> acc = default;
                float* bp = b + j;
                for (int p = 0; p < kc; p++, bp += NR)
                    acc += new System.Numerics.Vector<float>(ar[p]) * System.Numerics.Vector.Load(bp);
                System.Numerics.Vector.Store(acc, t + r * NR + j);
            }
        }
        StoreEdge(t, c, ldc, mv, nv, loadC, 1f, last, e, row, col);
    }

    /// <summary>
    /// Row and column task counts for an M x N product on this machine's cores, chosen to minimise what the tasks
    /// repeat: each column task streams all of its rows of A, each row task packs all of its columns of B (packing
    /// counted double: it reads and writes). Wide products (early layers) split columns, tall narrow ones (late
    /// layers at batch 1: 512 channels, 49 pixels) split rows, so neither core idles and A is not read 4 times.
    /// </summary>
    internal static void SplitRowsColumns(int m, int n, double flops, out int rowTasks, out int colTasks)
    {
        rowTasks = colTasks = 1;
        int threads = Environment.ProcessorCount;
        if (threads == 1 || flops < ParallelFlops) return;
        int rowPanels = (m + MR - 1) / MR, colPanels = (n + NR - 1) / NR;
        // Two tasks per core let the scheduler balance when another process takes a core for a while.
        int want = flops < 16 * ParallelFlops ? threads : 2 * threads;
        double best = double.MaxValue;
        for (int rt = 1; rt <= want; rt++)
        {
            if (want % rt != 0) continue;
            int ct = want / rt;
            if (rt > rowPanels || ct > colPanels) continue;
            double cost = (double)ct * m + 2.0 * rt * n;
            if (cost < best) { best = cost; rowTasks = rt; colTasks = ct; }
        }
        if (best == double.MaxValue) { rowTasks = Math.Min(rowPanels, want); colTasks = Math.Max(1, Math.Min(colPanels, want / rowTasks)); }
    }
}
