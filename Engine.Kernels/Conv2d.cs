using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Convolution: forward, backward-data (dx) and backward-weight (dw, db).
// Gradient rule for every backward in this file: gradients of parameters accumulate (+=),
// gradients of activations overwrite (=); ZeroGrad clears them. So BackwardData* writes every element of dx
// (its prior content is ignored) and BackwardWeight* adds into dw and db.

// ===== Host twin: the CPU backend and the specification the ILGPU kernels are tested against =====
public static partial class Conv2d
{
    /// <summary>
    /// y = conv(x, w) + b (then ReLU): the host backend's entry point, dispatching to the fastest version.
    /// Rule, on AVX2 + FMA machines, for 3x3 stride-1 pad-1 layers with C ≥ 64, by the number of 4x4 output tiles over
    /// the batch, T = N·⌈OH/4⌉·⌈OW/4⌉: below <see cref="WinogradMinTiles"/>, V5; else V4 Winograd F(4x4) where its
    /// tiles need strictly fewer multiplies than F(2x2)'s (⌈OH/4⌉·⌈OW/4⌉·36 &lt; ⌈OH/2⌉·⌈OW/2⌉·16: not outputs 2 wide or tall, where a 4x4 tile is
    /// three quarters padding); else V3 Winograd F(2x2). Both Winograd versions transform every filter on each call
    /// (V4: 36 MiB at 512 channels), which few tiles do not repay. So ResNet18 at batch 1 runs V4 at 56² and 28², V5
    /// at 14² and 7²; at batch 8 V4 on every 3x3 stride-1 layer, as VGG16 at batch 8 does. (F(2x2) measured ahead of
    /// F(4x4) at batch 1, 56², but switching there moved the AdamW trajectory test against PyTorch past its tolerance.) Everything else (strided, 1x1, C = 3
    /// stems, where each Winograd GEMM would be 3 deep) runs V5, except 3x3 stride-1 pad-1 stems with C ≤ 4 and outputs at least
    /// 16 wide (VGG16's conv1_1), which run V6 direct. The rule depends on the shape only, so results are
    /// deterministic. Measured per layer with `bench resnet18-convs` (docs/benchmarks.md). Without AVX2 the Winograd
    /// transforms run their scalar path, which has not been measured, so those machines stay on V5.
    /// </summary>
    public static void ForwardHost(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu) => ForwardHost(y, x, w, b, s, relu, null);

    /// <param name="filters">Where F(4x4)'s transformed filters may be kept between calls with unchanged weights
    /// (inference): null transforms them on every call.</param>
    public static void ForwardHost(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu, WinogradFilters? filters)
    {
        if (!s.IsDense) { ForwardHostGrouped(y, x, w, b, s, relu); return; }
        long tiles4 = (long)s.N * ((s.OutH + 3) / 4) * ((s.OutW + 3) / 4);
        if (HostWinograd.Supports(s) && s.C >= 64 && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported
            && tiles4 >= (filters != null ? WinogradMinTilesKeptFilters : WinogradMinTiles))
        {
            if (Winograd4x4FewerMultiplies(s)) ForwardHost_V4Winograd4x4(y, x, w, b, s, relu, filters);
            else ForwardHost_V3Winograd(y, x, w, b, s, relu);
        }
        else if (HostConvDirect.Supports(s))
            ForwardHost_V6DirectSmallC(y, x, w, b, s, relu);
        else
            ForwardHost_V5BatchedGemm(y, x, w, b, s, relu);
    }

    /// <summary>Most input channels <see cref="ForwardHost_V6DirectSmallC"/> computes.</summary>
    public const int DirectSmallCMaxChannels = HostConvDirect.MaxChannels;

    /// <summary>
    /// Version 6: direct 3x3 stride-1 pad-1 convolution for at most <see cref="DirectSmallCMaxChannels"/> input
    /// channels and outputs at least 16 wide (<see cref="HostConvDirect"/>): an RGB stem such as VGG16's conv1_1, whose
    /// im2col GEMM (V2, V5) is only C·9 = 27 deep, so each GEMM tile pays its packing and its store for 27 FMA steps.
    /// A 6-channel x 16-pixel register tile reads its taps from a zero-padded copy of its input rows.
    /// </summary>
    public static unsafe void ForwardHost_V6DirectSmallC(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V6DirectSmallC");
        if (!HostConvDirect.Supports(s))
            throw new ArgumentException($"conv2d V6DirectSmallC computes 3x3 stride-1 pad-1 convolutions with at most {HostConvDirect.MaxChannels} " +
                $"input channels and outputs at least 16 wide, on AVX2 + FMA, not {s}");
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
            HostConvDirect.Forward(py, px, pw, pb, s, relu);
    }

    /// <summary>Fewest 4x4 output tiles (over the batch) for which <see cref="ForwardHost"/> picks Winograd.</summary>
    public const int WinogradMinTiles = 32;

    /// <summary>The same when the transformed filters are kept between calls (inference): the transform no longer has
    /// to be repaid by the tiles of one call (ResNet18 at batch 1: 14x14 maps, 16 tiles, run F(4x4) at ~130 GFLOP/s
    /// with kept filters; 7x7 maps, 4 tiles padded to a 16-column panel, stay on V5).</summary>
    public const int WinogradMinTilesKeptFilters = 16;

    /// <summary>3x3 stride-1 pad-1: the shapes the Winograd versions (V3, V4) compute.</summary>
    public static bool WinogradSupports(ConvShape s) => HostWinograd.Supports(s);

    /// <summary>F(4x4)'s tiles need strictly fewer element-wise multiplies than F(2x2)'s for this output size.</summary>
    public static bool Winograd4x4FewerMultiplies(ConvShape s)
        => 36L * ((s.OutH + 3) / 4) * ((s.OutW + 3) / 4) < 16L * ((s.OutH + 1) / 2) * ((s.OutW + 1) / 2);

    /// <summary>A forward version's signature, for <see cref="BackwardDataHost_V3FlippedForward(Span{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ConvShape, ForwardVersion)"/>.</summary>
    public delegate void ForwardVersion(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ConvShape s, bool relu);

    /// <summary>
    /// Version 2: per image, y_n (K, OH*OW) = W (K, C*R*S) x col_n (C*R*S, OH*OW) with the blocked host GEMM.
    /// col_n is never stored: the GEMM's B-packing reads it straight from the image (Im2colB), and a 1x1
    /// stride-1 unpadded conv reads x_n (C, H*W) as B directly. W is packed once per call and shared by all
    /// images; bias and ReLU are applied in the GEMM's epilogue while the tile is still in registers.
    /// Parallel tasks are (image, slice of output pixels), a few per core, so batch 1 uses every core too.
    /// </summary>
    public static unsafe void ForwardHost_V2Im2colGemm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V2Im2colGemm");
        int m = s.K, n = s.OutH * s.OutW, k = s.C * s.R * s.S;
        bool direct = ReadsImageAsB(s);
        int mPad = HostGemmKernels.PaddedRows(m);
        float[] aBuf = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)((long)mPad * k + 16)));
        try
        {
            fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* aRaw = aBuf)
            {
                float* ap = (float*)(((nint)aRaw + 63) & ~(nint)63);
                HostGemmKernels.PackA(ap, pw, k, 1, m, k, 1f);
                var epi = new GemmEpilogue(RowBias: (nint)pb, Relu: relu);
                nint app = (nint)ap, yp = (nint)py, xp = (nint)px;
                long imageIn = (long)s.C * s.H * s.W, imageOut = (long)m * n;
                // Slices per image: enough tasks for ~4 per core in total, but no slice narrower than a panel.
                int threads = Environment.ProcessorCount;
                int slices = Math.Clamp((4 * threads + s.N - 1) / s.N, 1, (n + HostGemmKernels.NR - 1) / HostGemmKernels.NR);
                if (s.ForwardFlops / (s.N * slices) < 1e6) slices = 1;
                void Task(int t)
                {
                    int img = t / slices;
                    HostGemmKernels.Range(n, HostGemmKernels.NR, slices, t % slices, out int j0, out int j1);
                    if (j0 >= j1) return;
                    float* xi = (float*)xp + img * imageIn, yo = (float*)yp + img * imageOut;
                    if (direct)
                        HostGemmKernels.Run((float*)app, m, k, new StridedB((nint)xi, n, 1), 0, m, j0, j1, yo, n, 0f, epi, false);
                    else
                        HostGemmKernels.Run((float*)app, m, k, new Im2colB((nint)xi, s), 0, m, j0, j1, yo, n, 0f, epi, false);
                }
                if (threads == 1 || s.ForwardFlops < 4e6) for (int t = 0; t < s.N * slices; t++) Task(t);
                else Parallel.For(0, s.N * slices, Task);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(aBuf); }
    }

    /// <summary>
    /// Version 5: y (K, N*OH*OW) = W (K, C*R*S) x col (C*R*S, N*OH*OW) with W read in place (no packed copy of the
    /// weights, which V2 makes on every call) and col packed straight from the images (<see cref="Im2colBatchB"/>,
    /// stride-2 rows de-interleaved with AVX2). Maps of more than <see cref="BatchedGemmMaxPixels"/> outputs run one
    /// GEMM per image straight into y; smaller ones run the whole batch as one GEMM into a pooled (K, N*OH*OW)
    /// buffer (already biased and rectified by the GEMM's epilogue) copied to (N, K, OH, OW) afterwards, so the
    /// weights of late layers (9 MiB at 512 channels) stream once per call instead of once per image. Tasks split
    /// output channels or pixels, whichever repeats less (<see cref="HostGemmKernels.SplitRowsColumns"/>), so 7x7 and
    /// 14x14 maps at batch 1 keep every core busy.
    /// </summary>
    public static unsafe void ForwardHost_V5BatchedGemm(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V5BatchedGemm");
        int m = s.K, k = s.C * s.R * s.S, pixels = s.OutH * s.OutW;
        bool perImage = s.N == 1 || pixels > BatchedGemmMaxPixels;
        int n = perImage ? pixels : checked(s.N * pixels), gemms = perImage ? s.N : 1;
        float[]? tmp = perImage ? null : System.Buffers.ArrayPool<float>.Shared.Rent(checked(m * n));
        try
        {
            fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* pt = tmp)
            {
                var epi = new GemmEpilogue(RowBias: (nint)pb, Relu: relu);
                // Per image when there are enough images for the cores; else slices of each image's product too.
                int rowTasks = 1, colTasks = 1, threads = Environment.ProcessorCount;
                if (gemms < 2 * threads)
                    HostGemmKernels.SplitRowsColumns(m, n, s.ForwardFlops / gemms, out rowTasks, out colTasks);
                int perGemm = rowTasks * colTasks;
                long imageIn = (long)s.C * s.H * s.W, imageOut = (long)m * pixels;
                nint wp = (nint)pw, xp = (nint)px, cp = perImage ? (nint)py : (nint)pt;
                void Task(int t)
                {
                    int g = t / perGemm, slice = t % perGemm;
                    HostGemmKernels.Range(m, HostGemmKernels.MR, rowTasks, slice / colTasks, out int i0, out int i1);
                    HostGemmKernels.Range(n, HostGemmKernels.NR, colTasks, slice % colTasks, out int j0, out int j1);
                    if (i0 >= i1 || j0 >= j1) return;
                    var src = new Im2colBatchB(xp + (nint)(g * imageIn * sizeof(float)), s);
                    HostGemmKernels.RunRowMajorA((float*)wp, k, m, k, src, i0, i1, j0, j1, (float*)cp + g * imageOut, n, epi);
                }
                int tasks = gemms * perGemm;
                if (tasks == 1 || threads == 1 || s.ForwardFlops < 4e6) for (int t = 0; t < tasks; t++) Task(t);
                else Parallel.For(0, tasks, Task);
                if (perImage) return;
                // (K, N, OH*OW) -> (N, K, OH*OW), one contiguous run of pixels per (image, channel).
                nint yp = (nint)py;
                void Scatter(int nk)
                {
                    int img = nk / m, ch = nk % m;
                    new ReadOnlySpan<float>((float*)cp + (long)ch * n + (long)img * pixels, pixels)
                        .CopyTo(new Span<float>((float*)yp + (long)nk * pixels, pixels));
                }
                if ((long)m * n < 1 << 18) for (int nk = 0; nk < s.N * m; nk++) Scatter(nk);
                else Parallel.For(0, s.N * m, Scatter);
            }
        }
        finally { if (tmp != null) System.Buffers.ArrayPool<float>.Shared.Return(tmp); }
    }

    /// <summary>Largest output map (OH·OW) that <see cref="ForwardHost_V5BatchedGemm"/> runs as one GEMM over the
    /// batch; larger maps give each image's product enough columns to feed the cores without the copy.</summary>
    public const int BatchedGemmMaxPixels = 1024;

    /// <summary>
    /// Version 3: Winograd F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
    /// CVPR 2016), for 3x3 stride-1 pad-1 convolutions only. With 2x2 output tiles t and 4x4 input patches d:
    /// U = G g Gᵀ per (k, c) filter, V = Bᵀ d B per (c, tile), M_ξ = U_ξ · V_ξ for the 16 positions ξ (16 GEMMs
    /// (K x C)·(C x tiles) on the packed 6x16 micro-kernel), Y = Aᵀ M A + bias, then ReLU; G, Bᵀ and Aᵀ are
    /// written out in <see cref="HostWinograd"/>. 16 multiplies per (k, c, 2x2 outputs) instead of 36 (2.25x
    /// fewer); the transforms add and subtract up to 9 terms, so rounding grows a few times over direct
    /// summation (still ~1e-6 relative on VGG16 layers). Tiles are processed in chunks, so memory stays
    /// 16·(C + K)·(≤ 256) floats per thread, whatever the batch. Past-edge outputs of odd sizes are dropped.
    /// </summary>
    public static unsafe void ForwardHost_V3Winograd(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V3Winograd");
        if (!HostWinograd.Supports(s))
            throw new ArgumentException($"conv2d V3Winograd computes 3x3 stride-1 pad-1 convolutions only, not {s}");
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
            HostWinograd.Forward(py, px, pw, pb, s, relu, portable: false);
    }

    /// <summary>
    /// Version 4: Winograd F(4x4, 3x3) (Lavin and Gray, CVPR 2016, section 4.2), for 3x3 stride-1 pad-1 convolutions
    /// only. With 4x4 output tiles and 6x6 input patches: U = G g Gᵀ (6x6) per (k, c), V = Bᵀ d B per (c, tile),
    /// M_ξ = U_ξ · V_ξ for the 36 positions ξ (36 GEMMs (K x C)·(C x tiles) on the packed 6x16 micro-kernel),
    /// Y = Aᵀ M A + bias, then ReLU; the matrices are written out in <see cref="HostWinograd"/>'s F(4x4) part.
    /// 2.25 multiplies per output per (k, c) instead of V3's 4 (9 for the direct convolution); the transforms'
    /// entries reach 8 and the filter transform's 1/24, so rounding grows a few times over V3's (VGG16 taps against
    /// PyTorch: ≤ 4e-6 of the tap's max instead of ≤ 1.3e-6). Past-edge outputs of sizes not a multiple of 4 are dropped.
    /// </summary>
    public static void ForwardHost_V4Winograd4x4(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu) => ForwardHost_V4Winograd4x4(y, x, w, b, s, relu, null);

    /// <param name="filters">Keeps U between calls while its <see cref="WinogradFilters.Version"/> stays; null: transform here.</param>
    public static unsafe void ForwardHost_V4Winograd4x4(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu, WinogradFilters? filters)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V4Winograd4x4");
        if (!HostWinograd.Supports(s))
            throw new ArgumentException($"conv2d V4Winograd4x4 computes 3x3 stride-1 pad-1 convolutions only, not {s}");
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
        {
            if (filters == null)
            {
                HostWinograd.Forward4x4(py, px, pw, pb, s, relu, portable: false);
                return;
            }
            fixed (float* pu = filters.For(pw, s))
                HostWinograd.Forward4x4(py, px, pw, pb, s, relu, portable: false, pu);
        }
    }

    /// <summary>
    /// F(4x4)'s transformed filters U of one convolution's weights, kept while the weights' <see cref="Version"/>
    /// stays the same (an inference session transforms each layer's filters once instead of on every call:
    /// 36 MiB of U at 512 channels, most of a 7x7 layer's time at small batches). The caller owns the rule: set
    /// <see cref="Version"/> to a value that changes whenever the weights do.
    /// </summary>
    public sealed class WinogradFilters
    {
        float[]? u;
        long madeAt = long.MinValue;
        ConvShape shapeOf;

        /// <summary>Identifies the weights' contents: U is recomputed when it differs from the one U was made for.</summary>
        public long Version { get; set; }

        internal unsafe float[] For(float* w, ConvShape s)
        {
            var key = s with { N = 1, H = 1, W = 1 };
            if (u == null || madeAt != Version || key != shapeOf)
            {
                u = GC.AllocateUninitializedArray<float>(HostWinograd.FilterFloats4x4(s), pinned: true);
                fixed (float* pu = u) HostWinograd.TransformFilters4x4(pu, w, s);
                madeAt = Version;
                shapeOf = key;
            }
            return u;
        }
    }

    /// <summary>A 1x1 stride-1 convolution without any padding reads the image (C, H*W) itself as the GEMM's B.</summary>
    static bool ReadsImageAsB(ConvShape s)
        => s.R == 1 && s.S == 1 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 0 && s.PadW == 0 && s.PadEndH == 0 && s.PadEndW == 0;

    /// <summary>The dense versions index weights as (K, C, R, S) and read taps at unit spacing: grouped or dilated
    /// shapes go through <see cref="ForwardHostGrouped"/> (host) or <see cref="Conv2dVersion.V3GroupedDirect"/> instead.</summary>
    internal static void RequireDense(ConvShape s, string version, string instead = "Conv2d.ForwardHost")
    {
        if (!s.IsDense)
            throw new ArgumentException($"conv2d {version} computes dense convolutions only (groups 1, dilation 1), not {s}; "
                + $"grouped and dilated shapes go through {instead}");
    }

    static void CheckForward(ReadOnlySpan<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, ConvShape s)
    {
        s.Validate();
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
        Check.Length("b", b.Length, s.K, s);
    }

    /// <summary>
    /// y (N, K, OH, OW) = x (N, C, H, W) * w (K, C, R, S) + b (K), then ReLU if <paramref name="relu"/>.
    /// Version 1: direct loops, one (n, k) plane per task. Readable; the specification.
    /// </summary>
    public static unsafe void ForwardHost_V1Naive(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, ConvShape s, bool relu)
    {
        CheckForward(y, x, w, b, s);
        RequireDense(s, "V1Naive");
        int oh = s.OutH, ow = s.OutW;
        fixed (float* py = y) fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b)
        {
            nint yp = (nint)py, xp = (nint)px, wp = (nint)pw, bp = (nint)pb;
            Parallel.For(0, s.N * s.K, nk =>
            {
                int n = nk / s.K, k = nk % s.K;
                float* yo = (float*)yp + ((long)n * s.K + k) * oh * ow;
                float* xi = (float*)xp + (long)n * s.C * s.H * s.W;
                float* wk = (float*)wp + (long)k * s.C * s.R * s.S;
                float bias = ((float*)bp)[k];
                for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    float acc = bias;
                    for (int c = 0; c < s.C; c++)
                    for (int r = 0; r < s.R; r++)
                    {
                        int iy = oy * s.StrideH - s.PadH + r;
                        if ((uint)iy >= (uint)s.H) continue;
                        for (int q = 0; q < s.S; q++)
                        {
                            int ix = ox * s.StrideW - s.PadW + q;
                            if ((uint)ix >= (uint)s.W) continue;
                            acc += xi[((long)c * s.H + iy) * s.W + ix] * wk[(c * s.R + r) * s.S + q];
                        }
                    }
                    yo[oy * ow + ox] = relu && acc < 0f ? 0f : acc;
                }
            });
        }
    }
}

// ===== Host twin, backward: dx overwrites, dw and db accumulate =====
public static partial class Conv2d
{
    static void CheckBackwardData(ReadOnlySpan<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s)
    {
        s.Validate();
        RequireDenseBackward(s);
        Check.Length("dx", dx.Length, s.InputLength, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
    }

    /// <summary>Backward is written for dense convolutions (asymmetric padding included); grouped and dilated ones are forward-only.</summary>
    internal static void RequireDenseBackward(ConvShape s)
    {
        if (!s.IsDense)
            throw new NotSupportedException($"conv2d backward computes dense convolutions only (groups 1, dilation 1), not {s}");
    }

    static void CheckBackwardWeight(ReadOnlySpan<float> dw, ReadOnlySpan<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s)
    {
        s.Validate();
        RequireDenseBackward(s);
        Check.Length("dw", dw.Length, s.WeightLength, s);
        if (db.Length != 0) Check.Length("db", db.Length, s.K, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
    }

    /// <summary>
    /// dx (N, C, H, W) = conv_transpose(dy (N, K, OH, OW), w (K, C, R, S)), overwriting dx: the host backend's
    /// entry point. Rule: stride-1 layers whose padding is at most the kernel size minus one (every VGG16 layer)
    /// run as a forward convolution (<see cref="BackwardDataHost_V3FlippedForward"/>, Winograd for 3x3 with K ≥ 64);
    /// the rest (strided, over-padded) go through GEMM + col2im (<see cref="BackwardDataHost_V2Col2im"/>).
    /// </summary>
    public static void BackwardDataHost(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s)
    {
        if (FlippedForwardSupports(s)) BackwardDataHost_V3FlippedForward(dx, dy, w, s);
        else BackwardDataHost_V2Col2im(dx, dy, w, s);
    }

    /// <summary>
    /// dw (K, C, R, S) += Σ_n dy_n (K, OH*OW) · im2col(x_n)ᵀ (OH*OW, C*R*S); db (K) += Σ_{n, oy, ox} dy, skipped when
    /// <paramref name="db"/> is empty (a conv without bias). The host backend's entry point.
    /// Rule: V3 Winograd for 3x3 stride-1 pad-1 layers with C ≥ 64 on AVX2 + FMA machines, V2 otherwise (with C = 3,
    /// conv1_1's 16 GEMMs are 3 columns wide; measured with `bench hostops --backward --versions v2,v3`, see
    /// docs/benchmarks.md).
    /// </summary>
    public static void BackwardWeightHost(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s)
    {
        if (HostWinograd.Supports(s) && s.C >= 64 && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported)
            BackwardWeightHost_V3Winograd(dw, db, dy, x, s);
        else
            BackwardWeightHost_V2Im2colGemm(dw, db, dy, x, s);
    }

    /// <summary>
    /// Version 1 of backward-data, the specification: each dx element gathers every (k, r, q) whose output pixel
    /// it fed, dx[n, c, iy, ix] = Σ_{k, r, q} dy[n, k, oy, ox] · w[k, c, r, q] where oy·strideH - padH + r = iy and
    /// ox·strideW - padW + q = ix. One (n, c) plane per task.
    /// </summary>
    public static unsafe void BackwardDataHost_V1Naive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s)
    {
        CheckBackwardData(dx, dy, w, s);
        int oh = s.OutH, ow = s.OutW;
        fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* pw = w)
        {
            nint dxp = (nint)pdx, dyp = (nint)pdy, wp = (nint)pw;
            Parallel.For(0, s.N * s.C, nc =>
            {
                int n = nc / s.C, c = nc % s.C;
                float* dxo = (float*)dxp + (long)nc * s.H * s.W;
                float* dyn = (float*)dyp + (long)n * s.K * oh * ow;
                for (int iy = 0; iy < s.H; iy++)
                for (int ix = 0; ix < s.W; ix++)
                {
                    float acc = 0f;
                    for (int k = 0; k < s.K; k++)
                    for (int r = 0; r < s.R; r++)
                    {
                        int ty = iy + s.PadH - r;
                        if (ty < 0 || ty % s.StrideH != 0 || ty / s.StrideH >= oh) continue;
                        int oy = ty / s.StrideH;
                        for (int q = 0; q < s.S; q++)
                        {
                            int tx = ix + s.PadW - q;
                            if (tx < 0 || tx % s.StrideW != 0 || tx / s.StrideW >= ow) continue;
                            acc += dyn[((long)k * oh + oy) * ow + tx / s.StrideW] * ((float*)wp)[(((long)k * s.C + c) * s.R + r) * s.S + q];
                        }
                    }
                    dxo[(long)iy * s.W + ix] = acc;
                }
            });
        }
    }

    /// <summary>
    /// Version 1 of backward-weight, the specification: dw[k, c, r, q] += Σ_{n, oy, ox} dy[n, k, oy, ox] ·
    /// x[n, c, oy·strideH - padH + r, ox·strideW - padW + q] (0 in the padding), db[k] += Σ_{n, oy, ox} dy[n, k, oy, ox].
    /// One output channel k per task.
    /// </summary>
    public static unsafe void BackwardWeightHost_V1Naive(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s)
    {
        CheckBackwardWeight(dw, db, dy, x, s);
        int oh = s.OutH, ow = s.OutW;
        bool hasBias = db.Length != 0;
        fixed (float* pdw = dw) fixed (float* pdb = db) fixed (float* pdy = dy) fixed (float* px = x)
        {
            nint dwp = (nint)pdw, dbp = (nint)pdb, dyp = (nint)pdy, xp = (nint)px;
            Parallel.For(0, s.K, k =>
            {
                for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                for (int q = 0; q < s.S; q++)
                {
                    float acc = 0f;
                    for (int n = 0; n < s.N; n++)
                    {
                        float* dyk = (float*)dyp + ((long)n * s.K + k) * oh * ow;
                        float* xc = (float*)xp + ((long)n * s.C + c) * s.H * s.W;
                        for (int oy = 0; oy < oh; oy++)
                        {
                            int iy = oy * s.StrideH - s.PadH + r;
                            if ((uint)iy >= (uint)s.H) continue;
                            for (int ox = 0; ox < ow; ox++)
                            {
                                int ix = ox * s.StrideW - s.PadW + q;
                                if ((uint)ix >= (uint)s.W) continue;
                                acc += dyk[(long)oy * ow + ox] * xc[(long)iy * s.W + ix];
                            }
                        }
                    }
                    ((float*)dwp)[(((long)k * s.C + c) * s.R + r) * s.S + q] += acc;
                }
                if (!hasBias) return;
                float sum = 0f;
                for (int n = 0; n < s.N; n++)
                {
                    float* dyk = (float*)dyp + ((long)n * s.K + k) * oh * ow;
                    for (long p = 0; p < (long)oh * ow; p++) sum += dyk[p];
                }
                ((float*)dbp)[k] += sum;
            });
        }
    }

    /// <summary>Dense, stride 1, every pad ≤ kernel - 1: the shapes <see cref="BackwardDataHost_V3FlippedForward"/> computes.</summary>
    internal static bool FlippedForwardSupports(ConvShape s)
        => s.IsDense && s.StrideH == 1 && s.StrideW == 1 && s.PadH <= s.R - 1 && s.PadW <= s.S - 1
           && s.PadEndH <= s.R - 1 && s.PadEndW <= s.S - 1;

    /// <summary>The forward convolution that computes backward-data of a stride-1 <paramref name="s"/>: input dy
    /// (N, K, OH, OW), filters (C, K, R, S), begin pads R-1-padH, S-1-padW and end pads R-1-padBottom, S-1-padRight
    /// (the begin and end pads trade places); its output is (N, C, H, W).</summary>
    internal static ConvShape FlippedForwardShape(ConvShape s)
        => new(s.N, s.K, s.OutH, s.OutW, s.C, s.R, s.S, 1, 1, s.R - 1 - s.PadH, s.S - 1 - s.PadW,
            s.R - 1 - s.PadEndH, s.S - 1 - s.PadEndW);

    /// <summary>
    /// Version 3 of backward-data, stride 1 and padding ≤ kernel - 1 only: with stride 1 the transposed convolution
    /// is a plain convolution of dy with the filters transposed (K ↔ C) and rotated by 180°,
    /// dx[n, c, iy, ix] = Σ_{k, r', q'} dy[n, k, iy - (R-1-padH) + r', ix - (S-1-padW) + q'] · w[k, c, R-1-r', S-1-q'],
    /// so it runs on <see cref="ForwardHost"/> (Winograd F(4x4) or F(2x2) for 3x3 pad 1 with K ≥ 64, im2col GEMM otherwise) with a
    /// zero bias. The flipped filters (C, K, R, S) live in a pooled buffer.
    /// </summary>
    public static void BackwardDataHost_V3FlippedForward(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s)
        => BackwardDataHost_V3FlippedForward(dx, dy, w, s, ForwardHost);

    /// <summary>The same, with the flipped forward run by a named version (the bench times V3 against V4 this way).</summary>
    public static unsafe void BackwardDataHost_V3FlippedForward(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s, ForwardVersion forward)
    {
        CheckBackwardData(dx, dy, w, s);
        if (!FlippedForwardSupports(s))
            throw new ArgumentException($"conv2d backward-data V3FlippedForward computes stride-1 convolutions with padding ≤ kernel - 1 only, not {s}");
        var t = FlippedForwardShape(s);
        int len = checked((int)s.WeightLength);
        float[] wt = System.Buffers.ArrayPool<float>.Shared.Rent(len);
        float[] zero = System.Buffers.ArrayPool<float>.Shared.Rent(s.C);
        try
        {
            Array.Clear(zero, 0, s.C);
            int rs = s.R * s.S;
            fixed (float* pw = w) fixed (float* pt = wt)
            {
                nint wp = (nint)pw, tp = (nint)pt;
                // wt (C, K, R, S): wt[c, k, r, q] = w[k, c, R-1-r, S-1-q].
                void FlipChannel(int c)
                {
                    for (int k = 0; k < s.K; k++)
                    {
                        float* src = (float*)wp + ((long)k * s.C + c) * rs;
                        float* dst = (float*)tp + ((long)c * s.K + k) * rs;
                        for (int i = 0; i < rs; i++) dst[rs - 1 - i] = src[i];
                    }
                }
                if (len < 1 << 16) for (int c = 0; c < s.C; c++) FlipChannel(c);
                else Parallel.For(0, s.C, FlipChannel);
            }
            forward(dx, dy, wt.AsSpan(0, len), zero.AsSpan(0, s.C), t, relu: false);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(wt);
            System.Buffers.ArrayPool<float>.Shared.Return(zero);
        }
    }

    /// <summary>
    /// Version 2 of backward-data, any stride and padding: per image, dcol (C*R*S, OH*OW) = Wᵀ (C*R*S, K) · dy_n
    /// (K, OH*OW) on the blocked host GEMM, then col2im scatters dcol back into dx_n (C, H, W), one channel per task
    /// (channels own disjoint planes, so the scatter needs no synchronisation). dcol is one pooled buffer.
    /// </summary>
    public static unsafe void BackwardDataHost_V2Col2im(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, ConvShape s)
    {
        CheckBackwardData(dx, dy, w, s);
        int crs = s.C * s.R * s.S, oh = s.OutH, ow = s.OutW, pixels = oh * ow, rs = s.R * s.S;
        float[] col = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)((long)crs * pixels)));
        try
        {
            fixed (float* pdx = dx) fixed (float* pdy = dy) fixed (float* pw = w) fixed (float* pc = col)
            {
                nint dxp = (nint)pdx, cp = (nint)pc;
                long hw = (long)s.H * s.W;
                for (int n = 0; n < s.N; n++)
                {
                    HostGemmKernels.Gemm(pc, pw, pdy + (long)n * s.K * pixels, new GemmShape(crs, pixels, s.K, TransA: true), default);
                    float* dxn = (float*)dxp + n * s.C * hw;
                    void Col2im(int c)
                    {
                        float* plane = dxn + c * hw;
                        new Span<float>(plane, checked((int)hw)).Clear();
                        for (int r = 0; r < s.R; r++)
                        for (int q = 0; q < s.S; q++)
                        {
                            float* row = (float*)cp + ((long)c * rs + r * s.S + q) * pixels;
                            for (int oy = 0; oy < oh; oy++)
                            {
                                int iy = oy * s.StrideH - s.PadH + r;
                                if ((uint)iy >= (uint)s.H) continue;
                                float* dst = plane + (long)iy * s.W;
                                float* src = row + oy * ow;
                                for (int ox = 0; ox < ow; ox++)
                                {
                                    int ix = ox * s.StrideW - s.PadW + q;
                                    if ((uint)ix < (uint)s.W) dst[ix] += src[ox];
                                }
                            }
                        }
                    }
                    if ((long)crs * pixels < 1 << 16) for (int c = 0; c < s.C; c++) Col2im(c);
                    else Parallel.For(0, s.C, Col2im);
                }
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(col); }
    }

    /// <summary>
    /// Version 2 of backward-weight: per image, dw (K, C*R*S) += dy_n (K, OH*OW) · im2col(x_n)ᵀ (OH*OW, C*R*S) on the
    /// blocked host GEMM with beta = 1. dy_n is packed as A; op(B) is read straight from the image by
    /// <see cref="Im2colTransposedB"/> (a 1x1 stride-1 unpadded conv reads x_n (C, H*W) transposed directly), so no
    /// col buffer exists. Parallel tasks own disjoint slices of dw (columns, or rows when C*R*S is narrow) and every
    /// task walks all images, so dw needs no reduction across threads. db sums dy per channel, one channel per task.
    /// </summary>
    public static unsafe void BackwardWeightHost_V2Im2colGemm(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s)
    {
        CheckBackwardWeight(dw, db, dy, x, s);
        int m = s.K, n = s.C * s.R * s.S, pixels = s.OutH * s.OutW;
        bool direct = ReadsImageAsB(s);
        int mPad = HostGemmKernels.PaddedRows(m);
        float[] aBuf = System.Buffers.ArrayPool<float>.Shared.Rent(checked((int)((long)mPad * pixels + 16)));
        try
        {
            fixed (float* pdw = dw) fixed (float* pdb = db) fixed (float* pdy = dy) fixed (float* px = x) fixed (float* aRaw = aBuf)
            {
                float* ap = (float*)(((nint)aRaw + 63) & ~(nint)63);
                nint app = (nint)ap, dwp = (nint)pdw, xp = (nint)px, dyp = (nint)pdy;
                long imageIn = (long)s.C * s.H * s.W, imageOut = (long)m * pixels;
                double flopsPerImage = s.BackwardWeightFlops / s.N;
                HostGemmKernels.Split(m, n, flopsPerImage, out int rowTasks, out int colTasks);
                for (int img = 0; img < s.N; img++)
                {
                    HostGemmKernels.PackA(ap, pdy + img * imageOut, pixels, 1, m, pixels, 1f);
                    float* xi = px + img * imageIn;
                    nint xip = (nint)xi;
                    void Task(int t)
                    {
                        HostGemmKernels.Range(m, HostGemmKernels.MR, rowTasks, t / colTasks, out int i0, out int i1);
                        HostGemmKernels.Range(n, HostGemmKernels.NR, colTasks, t % colTasks, out int j0, out int j1);
                        if (i0 >= i1 || j0 >= j1) return;
                        if (direct)
                            HostGemmKernels.Run((float*)app, m, pixels, new StridedB(xip, 1, pixels), i0, i1, j0, j1, (float*)dwp, n, 1f, default, false);
                        else
                            HostGemmKernels.Run((float*)app, m, pixels, new Im2colTransposedB(xip, s), i0, i1, j0, j1, (float*)dwp, n, 1f, default, false);
                    }
                    if (rowTasks * colTasks == 1) Task(0);
                    else Parallel.For(0, rowTasks * colTasks, Task);
                }
                if (db.Length != 0) BiasGradient(pdb, pdy, s);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(aBuf); }
    }

    /// <summary>
    /// Version 3 of backward-weight: Winograd F(2x2, 3x3) in its filter-gradient form (Lavin and Gray, "Fast
    /// Algorithms for Convolutional Neural Networks", CVPR 2016, section 5), for 3x3 stride-1 pad-1 convolutions only.
    /// Differentiating the forward's tile Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A gives dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)] G:
    /// 16 GEMMs M_ξ (K x C) += U'_ξ (K x tiles) · V_ξᵀ (tiles x C) on the packed 6x16 micro-kernel, 16 multiplies per
    /// (k, c, 2x2 outputs) instead of 36; the transforms are written out in <see cref="HostWinograd.BackwardWeight"/>.
    /// Tiles run in chunks split into a fixed number of partitions (by shape, not by core count or timing), so the
    /// result is the same on every run. db sums dy per channel as in V2.
    /// </summary>
    public static unsafe void BackwardWeightHost_V3Winograd(Span<float> dw, Span<float> db, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ConvShape s)
    {
        CheckBackwardWeight(dw, db, dy, x, s);
        if (!HostWinograd.Supports(s))
            throw new ArgumentException($"conv2d backward-weight V3Winograd computes 3x3 stride-1 pad-1 convolutions only, not {s}");
        fixed (float* pdw = dw) fixed (float* pdb = db) fixed (float* pdy = dy) fixed (float* px = x)
        {
            HostWinograd.BackwardWeight(pdw, pdy, px, s);
            if (db.Length != 0) BiasGradient(pdb, pdy, s);
        }
    }

    /// <summary>db[k] += Σ_{n, oy, ox} dy[n, k, oy, ox], summed in double; one channel per task.</summary>
    static unsafe void BiasGradient(float* db, float* dy, ConvShape s)
    {
        int pixels = s.OutH * s.OutW;
        long imageOut = (long)s.K * pixels;
        nint dbp = (nint)db, dyp = (nint)dy;
        void Bias(int k)
        {
            double sum = 0;
            for (int img = 0; img < s.N; img++)
                sum += PlaneSum((float*)dyp + img * imageOut + (long)k * pixels, pixels);
            ((float*)dbp)[k] += (float)sum;
        }
        if (s.OutputLength < 1 << 16) for (int k = 0; k < s.K; k++) Bias(k);
        else Parallel.For(0, s.K, Bias);
    }

    /// <summary>Σ p[0 .. count) with 4 vector accumulators, summed in double at the end.</summary>
    static unsafe double PlaneSum(float* p, int count)
    {
        int lanes = System.Numerics.Vector<float>.Count, i = 0;
        System.Numerics.Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i + 4 * lanes <= count; i += 4 * lanes)
        {
            a0 += System.Numerics.Vector.Load(p + i); a1 += System.Numerics.Vector.Load(p + i + lanes);
            a2 += System.Numerics.Vector.Load(p + i + 2 * lanes); a3 += System.Numerics.Vector.Load(p + i + 3 * lanes);
        }
        double sum = System.Numerics.Vector.Sum(a0 + a1) + (double)System.Numerics.Vector.Sum(a2 + a3);
        for (; i < count; i++) sum += p[i];
        return sum;
    }
}

// ===== ILGPU kernels =====

/// <summary>Convolution forward kernel versions, selectable by name.</summary>
public enum Conv2dVersion
{
    /// <summary>One thread per output element, direct loops: the reference kernel.</summary>
    V1Naive,
    /// <summary>
    /// Implicit GEMM: Y (K, N*OH*OW) = W (K, C*R*S) x im2col(X) (C*R*S, N*OH*OW), with the im2col columns
    /// gathered straight from X into shared memory (no im2col buffer); 64 x 64 tiles, 4 x 4 register blocks.
    /// </summary>
    V2ImplicitGemm,
    /// <summary>One thread per output element over its group's channels and dilated taps: the version for grouped,
    /// depthwise and dilated convolutions (the dense versions refuse them); it computes dense shapes too.</summary>
    V3GroupedDirect,
    /// <summary>
    /// Implicit GEMM on 128 x 128 tiles with 8 x 8 register blocks read as 16-byte shared vectors, 8-deep slices
    /// double-buffered with a register prefetch, and an im2col gather without division in the reduction loop
    /// (Conv2dTiled128.cs). Dense shapes only.
    /// </summary>
    V4ImplicitGemm128,
    /// <summary>Implicit GEMM on tensor cores, inputs rounded to tf32, fp32 accumulation; CUDA compute capability 8.0+ only (see <see cref="Conv2dMmaGpu"/>).</summary>
    V4MmaTf32,
    /// <summary>Implicit GEMM on tensor cores, inputs rounded to fp16, fp32 accumulation; CUDA compute capability 8.0+ only.</summary>
    V4MmaF16,
    /// <summary>Implicit GEMM on tensor cores, inputs rounded to bf16, fp32 accumulation; CUDA compute capability 8.0+ only.</summary>
    V4MmaBf16,
}

/// <summary>Convolution backward kernel versions (backward-data and backward-weight), selectable by name.</summary>
public enum Conv2dBackwardVersion
{
    /// <summary>One thread per dx element gathering over (k, r, q); one thread per dw element reducing over
    /// (n, oy, ox), plus one per db element: the reference kernels.</summary>
    V1Naive,
    /// <summary>
    /// Implicit GEMM on 64 x 64 shared-memory tiles, 4 x 4 register blocks, 256-thread groups. Data:
    /// dx (C, N*H*W) = Wᵀ (C, K*R*S) x gather(dy) (K*R*S, N*H*W), dy gathered straight into shared memory (0 where
    /// stride skips an input or the tap falls outside dy). Weight: dw (K, C*R*S) += dy (K, N*OH*OW) x im2col(x)ᵀ,
    /// the reduction split over grid.z with atomic adds so long reductions still fill the device; db in a
    /// group-per-channel reduction.
    /// </summary>
    V2Tiled,
    /// <summary>
    /// The V2 GEMMs on 128 x 128 tiles with 8 x 8 register blocks, 16-byte shared vectors, double-buffered 8-deep
    /// slices with a register prefetch, and gathers without division in the reduction loop (Conv2dTiled128.cs); db
    /// as in V2.
    /// </summary>
    V3Tiled128,
}

/// <summary>Kernel arguments of a convolution: the shape plus derived sizes, computed once on the host.</summary>
internal readonly struct ConvArgs
{
    public readonly int N, C, H, W, K, R, S, StrideH, StrideW, PadH, PadW, OutH, OutW, Relu;
    public readonly int DilationH, DilationW;
    public readonly int GroupC, GroupK; // channels per group: C / Groups in, K / Groups out
    public readonly int Crs;       // reduction length (C/Groups)*R*S, a weight row
    public readonly long Pixels;   // GEMM columns N*OH*OW

    public ConvArgs(ConvShape s, bool relu)
    {
        N = s.N; C = s.C; H = s.H; W = s.W; K = s.K; R = s.R; S = s.S;
        StrideH = s.StrideH; StrideW = s.StrideW; PadH = s.PadH; PadW = s.PadW;
        OutH = s.OutH; OutW = s.OutW; Relu = relu ? 1 : 0;
        DilationH = s.DilationH; DilationW = s.DilationW;
        GroupC = s.GroupChannels; GroupK = s.GroupOutChannels;
        Crs = s.GroupChannels * s.R * s.S;
        Pixels = (long)s.N * s.OutH * s.OutW;
    }
}

/// <summary>
/// Convolution forward on an ILGPU accelerator: y (N, K, OH, OW) = x (N, C, H, W) * w (K, C/G, R, S) + b (K),
/// then ReLU if asked; any kernel size, stride, padding (asymmetric too), dilation and groups (grouped and dilated
/// shapes run <see cref="Conv2dVersion.V3GroupedDirect"/>). Kernels are compiled once in the constructor;
/// launches go to the default stream and are not synchronised.
/// </summary>
public sealed partial class Conv2dGpu
{
    private const int Tile = 64, TileK = 16, Threads = Accelerators.TiledGroupSize;
    /// <summary>Longest reduction one backward-weight group walks: VGG16's conv1_2 at batch 8 (N·OH·OW = 401408)
    /// becomes 392 groups per output tile, and the tests' 2·24·24 = 1152 already runs split.</summary>
    private const int MaxSplitLength = 1024;

    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs> _naive;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>? _implicitGemm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs> _dataNaive;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int> _weightNaive;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>? _dataTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>? _weightTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ConvArgs>? _biasGrad;
    // Tensor-core versions: only where inline PTX mma runs (CUDA, compute capability 8.0+), and loaded on their first
    // use, so that a driver refusing their PTX fails the mma versions only, never the fp32 ones.
    private readonly bool _hasMma;
    private Conv2dMmaGpu? _mma;

    public Conv2dGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _naive = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(NaiveKernel);
        _grouped = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(GroupedDirectKernel);
        _dataNaive = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(BackwardDataNaiveKernel);
        _weightNaive = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>(BackwardWeightNaiveKernel);
        if (accelerator.MaxNumThreadsPerGroup >= Threads)
        {
            _implicitGemm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(ImplicitGemmKernel);
            _dataTiled = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs>(BackwardDataTiledKernel);
            _weightTiled = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvArgs, int>(BackwardWeightTiledKernel);
            _biasGrad = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ConvArgs>(BiasGradTiledKernel);
            LoadTiled128Kernels(accelerator);
        }
        _hasMma = Precisions.HasTensorCores(accelerator);
    }

    /// <summary>Whether the tensor-core versions (V4Mma*) run on this accelerator.</summary>
    public bool HasMma => _hasMma;

    /// <summary>The fastest backward version this accelerator can run.</summary>
    public Conv2dBackwardVersion DefaultBackwardVersion => _dataTiled128 != null ? Conv2dBackwardVersion.V3Tiled128 : Conv2dBackwardVersion.V1Naive;

    /// <summary>The fastest version this accelerator can run.</summary>
    public Conv2dVersion DefaultVersion => _implicitGemm128 != null ? Conv2dVersion.V4ImplicitGemm128 : Conv2dVersion.V1Naive;

    /// <summary>With the default version: the dense one for dense shapes, <see cref="Conv2dVersion.V3GroupedDirect"/> otherwise.</summary>
    public void Forward(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvShape s, bool relu)
        => Forward(s.IsDense ? DefaultVersion : Conv2dVersion.V3GroupedDirect, y, x, w, b, s, relu);

    public void Forward(Conv2dVersion version, ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        ConvShape s, bool relu)
    {
        s.Validate();
        Check.Length("y", y.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
        Check.Length("b", b.Length, s.K, s);
        if (version != Conv2dVersion.V3GroupedDirect) Conv2d.RequireDense(s, $"ILGPU {version}", "Conv2dVersion.V3GroupedDirect (the default for them)");
        var args = new ConvArgs(s, relu);
        switch (version)
        {
            case Conv2dVersion.V3GroupedDirect:
            {
                int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
                _grouped(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, w, b, args);
                break;
            }
            case Conv2dVersion.V1Naive:
            {
                int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
                _naive(Accelerators.GridStride(_acc, s.OutputLength, gs), y, x, w, b, args);
                break;
            }
            case Conv2dVersion.V2ImplicitGemm:
            {
                if (_implicitGemm == null) Accelerators.RequireTiledGroup(_acc, "conv2d V2ImplicitGemm");
                long colTiles = (args.Pixels + Tile - 1) / Tile;
                if (colTiles > int.MaxValue) throw new ArgumentException($"conv2d: N*OH*OW too large for one launch: {s}");
                var grid = new Index2D((int)colTiles, (s.K + Tile - 1) / Tile);
                _implicitGemm!(new KernelConfig(grid, new Index2D(Threads, 1)), y, x, w, b, args);
                break;
            }
            case Conv2dVersion.V4ImplicitGemm128:
                LaunchForwardV3(y, x, w, b, s, args);
                break;
            case Conv2dVersion.V4MmaTf32 or Conv2dVersion.V4MmaF16 or Conv2dVersion.V4MmaBf16:
                if (!_hasMma)
                    throw new NotSupportedException($"conv2d {version}: {Precisions.WhyNot(Conv2dMmaGpu.PrecisionOf(version), _acc)}; tensor-core versions need a CUDA GPU of compute capability 8.0 or newer");
                (_mma ??= new Conv2dMmaGpu(_acc)).Launch(version, y, x, w, b, args, s);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(version), version, "conv2d: unknown version");
        }
    }

    /// <summary>Reference kernel: grid-stride over y's elements, same loop order as <see cref="Conv2d.ForwardHost_V1Naive"/>.</summary>
    private static void NaiveKernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
    {
        long total = s.Pixels * s.K;
        long stride = (long)Grid.DimX * Group.DimX;
        long plane = (long)s.OutH * s.OutW;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long nk = e / plane;
            int pix = (int)(e - nk * plane);
            int n = (int)(nk / s.K), k = (int)(nk - (long)n * s.K);
            int oy = pix / s.OutW, ox = pix - oy * s.OutW;
            long xn = (long)n * s.C * s.H * s.W;
            long wk = (long)k * s.Crs;
            float acc = b[k];
            for (int c = 0; c < s.C; c++)
            for (int r = 0; r < s.R; r++)
            {
                int iy = oy * s.StrideH - s.PadH + r;
                if (iy < 0 || iy >= s.H) continue;
                for (int q = 0; q < s.S; q++)
                {
                    int ix = ox * s.StrideW - s.PadW + q;
                    if (ix < 0 || ix >= s.W) continue;
                    acc += x[xn + ((long)c * s.H + iy) * s.W + ix] * w[wk + (c * s.R + r) * s.S + q];
                }
            }
            y[e] = s.Relu != 0 && acc < 0f ? 0f : acc;
        }
    }

    /// <summary>
    /// Implicit GEMM. Group (bx, by) owns output channels by*64 .. +64 and GEMM columns (flattened (n, oy, ox))
    /// bx*64 .. +64; thread t = (tx = t % 16, ty = t / 16) owns channels ty + 16 ii and columns tx + 16 jj.
    /// Per 16-deep slice of the reduction index p = (c, r, q): Ws (16, 64) = weight slice transposed, loaded with
    /// consecutive threads on consecutive p (contiguous in OIHW); Xs (16, 64) = im2col slice, each thread keeping
    /// one fixed column so (n, oy, ox) is decoded once, consecutive threads on consecutive output pixels
    /// (coalesced along ox for stride 1). Out-of-range or padding positions load 0.
    /// </summary>
    private static void ImplicitGemmKernel(ArrayView<float> y, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ConvArgs s)
    {
        var Ws = SharedMemory.Allocate<float>(TileK * Tile);
        var Xs = SharedMemory.Allocate<float>(TileK * Tile);
        int t = Group.IdxX, tx = t % 16, ty = t / 16;
        int row0 = Grid.IdxY * Tile;
        long col0 = (long)Grid.IdxX * Tile;
        int rs = s.R * s.S;
        long plane = (long)s.OutH * s.OutW;

        // This thread's im2col column for loading.
        int lj = t % Tile;
        long lcol = col0 + lj;
        bool colValid = lcol < s.Pixels;
        int ln = 0, iyBase = 0, ixBase = 0;
        if (colValid)
        {
            ln = (int)(lcol / plane);
            int pix = (int)(lcol - ln * plane);
            int oy = pix / s.OutW, ox = pix - oy * s.OutW;
            iyBase = oy * s.StrideH - s.PadH;
            ixBase = ox * s.StrideW - s.PadW;
        }
        long xn = (long)ln * s.C * s.H * s.W;

        var acc = new RegisterTile();

        for (int k0 = 0; k0 < s.Crs; k0 += TileK)
        {
            {
                int p = t % TileK, gp = k0 + p;
                for (int r = 0; r < 4; r++)
                {
                    int i = t / TileK + 16 * r, gk = row0 + i;
                    Ws[p * Tile + i] = gk < s.K && gp < s.Crs ? w[(long)gk * s.Crs + gp] : 0f;
                }
            }
            for (int r = 0; r < 4; r++)
            {
                int p = t / Tile + 4 * r, gp = k0 + p;
                float v = 0f;
                if (colValid && gp < s.Crs)
                {
                    int c = gp / rs, rem = gp - c * rs;
                    int kr = rem / s.S, kq = rem - kr * s.S;
                    int iy = iyBase + kr, ix = ixBase + kq;
                    if (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W)
                        v = x[xn + ((long)c * s.H + iy) * s.W + ix];
                }
                Xs[p * Tile + lj] = v;
            }
            Group.Barrier();

            acc.Accumulate(Ws, Xs, ty, tx);
            Group.Barrier();
        }

        long oc = col0 + tx;
        StoreRow(y, b, s, plane, row0 + ty, oc, acc.C00, acc.C01, acc.C02, acc.C03);
        StoreRow(y, b, s, plane, row0 + ty + 16, oc, acc.C10, acc.C11, acc.C12, acc.C13);
        StoreRow(y, b, s, plane, row0 + ty + 32, oc, acc.C20, acc.C21, acc.C22, acc.C23);
        StoreRow(y, b, s, plane, row0 + ty + 48, oc, acc.C30, acc.C31, acc.C32, acc.C33);
    }

    private static void StoreRow(ArrayView<float> y, ArrayView<float> b, ConvArgs s, long plane, int k, long col,
        float v0, float v1, float v2, float v3)
    {
        if (k >= s.K) return;
        float bias = b[k];
        Store(y, s, plane, k, col, v0 + bias);
        Store(y, s, plane, k, col + 16, v1 + bias);
        Store(y, s, plane, k, col + 32, v2 + bias);
        Store(y, s, plane, k, col + 48, v3 + bias);
    }

    private static void Store(ArrayView<float> y, ConvArgs s, long plane, int k, long col, float v)
    {
        if (col >= s.Pixels) return;
        long n = col / plane;
        long pix = col - n * plane;
        y[(n * s.K + k) * plane + pix] = s.Relu != 0 && v < 0f ? 0f : v;
    }

    // ===== Backward: dx overwrites, dw and db accumulate =====

    /// <summary>dx (N, C, H, W) = conv_transpose(dy (N, K, OH, OW), w (K, C, R, S)), overwriting dx, with the default version.</summary>
    public void BackwardData(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvShape s)
        => BackwardData(DefaultBackwardVersion, dx, dy, w, s);

    public void BackwardData(Conv2dBackwardVersion version, ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvShape s)
    {
        s.Validate();
        Conv2d.RequireDenseBackward(s);
        if ((long)s.K * s.R * s.S > int.MaxValue) throw new ArgumentException($"conv2d backward-data: K*R*S exceeds 2^31-1 for {s}");
        Check.Length("dx", dx.Length, s.InputLength, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("w", w.Length, s.WeightLength, s);
        var args = new ConvArgs(s, relu: false);
        switch (version)
        {
            case Conv2dBackwardVersion.V1Naive:
            {
                int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
                _dataNaive(Accelerators.GridStride(_acc, s.InputLength, gs), dx, dy, w, args);
                break;
            }
            case Conv2dBackwardVersion.V2Tiled:
            {
                if (_dataTiled == null) Accelerators.RequireTiledGroup(_acc, "conv2d backward-data V2Tiled");
                long colTiles = ((long)s.N * s.H * s.W + Tile - 1) / Tile;
                if (colTiles > int.MaxValue) throw new ArgumentException($"conv2d backward-data: N*H*W too large for one launch: {s}");
                var grid = new Index2D((int)colTiles, (s.C + Tile - 1) / Tile);
                _dataTiled!(new KernelConfig(grid, new Index2D(Threads, 1)), dx, dy, w, args);
                break;
            }
            case Conv2dBackwardVersion.V3Tiled128:
                LaunchBackwardDataV3(dx, dy, w, s, args);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(version), version, "conv2d backward-data: unknown version");
        }
    }

    /// <summary>dw (K, C, R, S) += Σ_n dy_n · im2col(x_n)ᵀ and, when <paramref name="hasBias"/>, db (K) += Σ dy over
    /// (n, oy, ox), with the default version. Without bias db is not read and may be empty.</summary>
    public void BackwardWeight(ArrayView<float> dw, ArrayView<float> db, ArrayView<float> dy, ArrayView<float> x, ConvShape s, bool hasBias = true)
        => BackwardWeight(DefaultBackwardVersion, dw, db, dy, x, s, hasBias);

    public void BackwardWeight(Conv2dBackwardVersion version, ArrayView<float> dw, ArrayView<float> db, ArrayView<float> dy, ArrayView<float> x,
        ConvShape s, bool hasBias = true)
    {
        s.Validate();
        Conv2d.RequireDenseBackward(s);
        Check.Length("dw", dw.Length, s.WeightLength, s);
        if (hasBias) Check.Length("db", db.Length, s.K, s);
        Check.Length("dy", dy.Length, s.OutputLength, s);
        Check.Length("x", x.Length, s.InputLength, s);
        var args = new ConvArgs(s, relu: false);
        switch (version)
        {
            case Conv2dBackwardVersion.V1Naive:
            {
                int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
                long items = s.WeightLength + (hasBias ? s.K : 0);
                _weightNaive(Accelerators.GridStride(_acc, items, gs), dw, db, dy, x, args, hasBias ? 1 : 0);
                break;
            }
            case Conv2dBackwardVersion.V2Tiled:
            {
                if (_weightTiled == null) Accelerators.RequireTiledGroup(_acc, "conv2d backward-weight V2Tiled");
                int colTiles = (args.Crs + Tile - 1) / Tile, rowTiles = (s.K + Tile - 1) / Tile;
                int splitLen = WeightSplitLength(args.Pixels, (long)colTiles * rowTiles);
                int splits = (int)((args.Pixels + splitLen - 1) / splitLen);
                var grid = new Index3D(colTiles, rowTiles, splits);
                _weightTiled!(new KernelConfig(grid, new Index3D(Threads, 1, 1)), dw, dy, x, args, splitLen);
                if (hasBias) _biasGrad!(new KernelConfig(new Index1D(s.K), new Index1D(Threads)), db, dy, args);
                break;
            }
            case Conv2dBackwardVersion.V3Tiled128:
                LaunchBackwardWeightV3(dw, dy, x, s, args);
                if (hasBias) _biasGrad!(new KernelConfig(new Index1D(s.K), new Index1D(Threads)), db, dy, args);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(version), version, "conv2d backward-weight: unknown version");
        }
    }

    /// <summary>
    /// Reduction length per group of the tiled backward-weight (a multiple of the 16-deep slice): at most
    /// <see cref="MaxSplitLength"/>, and shorter when that is needed for output tiles x splits to give every
    /// multiprocessor several groups; never under 8 slices, so the atomic adds (one per output per split) stay
    /// below 1/128 of the multiply-adds.
    /// </summary>
    private int WeightSplitLength(long reduction, long outputTiles)
    {
        long wantGroups = 4L * Math.Max(1, _acc.NumMultiprocessors);
        long splits = Math.Max(Math.Max(1, wantGroups / outputTiles), (reduction + MaxSplitLength - 1) / MaxSplitLength);
        long len = (reduction + splits - 1) / splits;
        len = Math.Max(8L * TileK, (len + TileK - 1) / TileK * TileK);
        return (int)Math.Min(len, int.MaxValue / 2 / TileK * TileK);
    }

    /// <summary>Reference kernel: grid-stride over dx's elements, the loops of <see cref="Conv2d.BackwardDataHost_V1Naive"/>.</summary>
    private static void BackwardDataNaiveKernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvArgs s)
    {
        long plane = (long)s.H * s.W, total = (long)s.N * s.C * plane;
        long stride = (long)Grid.DimX * Group.DimX;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            long nc = e / plane;
            int pix = (int)(e - nc * plane);
            int n = (int)(nc / s.C), c = (int)(nc - (long)n * s.C);
            int iy = pix / s.W, ix = pix - iy * s.W;
            float acc = 0f;
            for (int k = 0; k < s.K; k++)
            for (int r = 0; r < s.R; r++)
            {
                int ty = iy + s.PadH - r;
                if (ty < 0 || ty % s.StrideH != 0 || ty / s.StrideH >= s.OutH) continue;
                int oy = ty / s.StrideH;
                for (int q = 0; q < s.S; q++)
                {
                    int tx = ix + s.PadW - q;
                    if (tx < 0 || tx % s.StrideW != 0 || tx / s.StrideW >= s.OutW) continue;
                    acc += dy[(((long)n * s.K + k) * s.OutH + oy) * s.OutW + tx / s.StrideW]
                         * w[(((long)k * s.C + c) * s.R + r) * s.S + q];
                }
            }
            dx[e] = acc;
        }
    }

    /// <summary>Reference kernel: grid-stride over dw's elements then db's (when hasBias), the loops of
    /// <see cref="Conv2d.BackwardWeightHost_V1Naive"/>; each adds its sum to the element.</summary>
    private static void BackwardWeightNaiveKernel(ArrayView<float> dw, ArrayView<float> db, ArrayView<float> dy, ArrayView<float> x,
        ConvArgs s, int hasBias)
    {
        long weights = (long)s.K * s.Crs, total = weights + (hasBias != 0 ? s.K : 0);
        long stride = (long)Grid.DimX * Group.DimX;
        long plane = (long)s.OutH * s.OutW;
        int rs = s.R * s.S;
        for (long e = Grid.GlobalIndex.X; e < total; e += stride)
        {
            if (e >= weights)
            {
                int kb = (int)(e - weights);
                float sum = 0f;
                for (int n = 0; n < s.N; n++)
                    for (long p = 0; p < plane; p++) sum += dy[((long)n * s.K + kb) * plane + p];
                db[kb] += sum;
                continue;
            }
            int k = (int)(e / s.Crs), j = (int)(e - (long)k * s.Crs);
            int c = j / rs, rem = j - c * rs, r = rem / s.S, q = rem - r * s.S;
            float acc = 0f;
            for (int n = 0; n < s.N; n++)
            {
                long dyk = ((long)n * s.K + k) * plane, xc = ((long)n * s.C + c) * s.H * s.W;
                for (int oy = 0; oy < s.OutH; oy++)
                {
                    int iy = oy * s.StrideH - s.PadH + r;
                    if (iy < 0 || iy >= s.H) continue;
                    for (int ox = 0; ox < s.OutW; ox++)
                    {
                        int ix = ox * s.StrideW - s.PadW + q;
                        if (ix < 0 || ix >= s.W) continue;
                        acc += dy[dyk + (long)oy * s.OutW + ox] * x[xc + (long)iy * s.W + ix];
                    }
                }
            }
            dw[e] += acc;
        }
    }

    /// <summary>
    /// Backward-data as an implicit GEMM, the forward kernel's layout with the roles changed. Group (bx, by) owns
    /// input channels by*64 .. +64 and dx pixels (flattened (n, iy, ix)) bx*64 .. +64; thread t = (tx = t % 16,
    /// ty = t / 16) owns channels ty + 16 ii and pixels tx + 16 jj. Per 16-deep slice of p = (k, r, q):
    /// Ws (16, 64) = w[k, c, r, q] for the group's channels; Ys (16, 64) = dy[n, k, oy, ox] with
    /// oy = (iy + padH - r) / strideH, ox likewise, 0 when the division is inexact or (oy, ox) is outside dy. Each
    /// thread keeps one pixel for loading, so (n, iy, ix) is decoded once.
    /// </summary>
    private static void BackwardDataTiledKernel(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> w, ConvArgs s)
    {
        var Ws = SharedMemory.Allocate<float>(TileK * Tile);
        var Ys = SharedMemory.Allocate<float>(TileK * Tile);
        int t = Group.IdxX, tx = t % 16, ty = t / 16;
        int row0 = Grid.IdxY * Tile;
        long col0 = (long)Grid.IdxX * Tile;
        int rs = s.R * s.S, krs = s.K * rs;
        long plane = (long)s.H * s.W, pixels = s.N * plane, outPlane = (long)s.OutH * s.OutW;

        int lj = t % Tile;
        long lcol = col0 + lj;
        bool colValid = lcol < pixels;
        int ln = 0, tyBase = 0, txBase = 0;
        if (colValid)
        {
            ln = (int)(lcol / plane);
            int pix = (int)(lcol - ln * plane);
            int iy = pix / s.W, ix = pix - iy * s.W;
            tyBase = iy + s.PadH;
            txBase = ix + s.PadW;
        }
        long dyn = (long)ln * s.K * outPlane;

        var acc = new RegisterTile();

        for (int k0 = 0; k0 < krs; k0 += TileK)
        {
            {
                int p = t % TileK, gp = k0 + p;
                int k = gp / rs, rem = gp - k * rs;
                for (int r = 0; r < 4; r++)
                {
                    int i = t / TileK + 16 * r, gc = row0 + i;
                    Ws[p * Tile + i] = gc < s.C && gp < krs ? w[((long)k * s.C + gc) * rs + rem] : 0f;
                }
            }
            for (int r = 0; r < 4; r++)
            {
                int p = t / Tile + 4 * r, gp = k0 + p;
                float v = 0f;
                if (colValid && gp < krs)
                {
                    int k = gp / rs, rem = gp - k * rs;
                    int kr = rem / s.S, kq = rem - kr * s.S;
                    int yy = tyBase - kr, xx = txBase - kq;
                    if (yy >= 0 && xx >= 0 && yy % s.StrideH == 0 && xx % s.StrideW == 0)
                    {
                        int oy = yy / s.StrideH, ox = xx / s.StrideW;
                        if (oy < s.OutH && ox < s.OutW)
                            v = dy[dyn + k * outPlane + (long)oy * s.OutW + ox];
                    }
                }
                Ys[p * Tile + lj] = v;
            }
            Group.Barrier();

            acc.Accumulate(Ws, Ys, ty, tx);
            Group.Barrier();
        }

        long oc = col0 + tx;
        StoreDataRow(dx, s, plane, pixels, row0 + ty, oc, acc.C00, acc.C01, acc.C02, acc.C03);
        StoreDataRow(dx, s, plane, pixels, row0 + ty + 16, oc, acc.C10, acc.C11, acc.C12, acc.C13);
        StoreDataRow(dx, s, plane, pixels, row0 + ty + 32, oc, acc.C20, acc.C21, acc.C22, acc.C23);
        StoreDataRow(dx, s, plane, pixels, row0 + ty + 48, oc, acc.C30, acc.C31, acc.C32, acc.C33);
    }

    private static void StoreDataRow(ArrayView<float> dx, ConvArgs s, long plane, long pixels, int c, long col,
        float v0, float v1, float v2, float v3)
    {
        if (c >= s.C) return;
        for (int jj = 0; jj < 4; jj++)
        {
            long cj = col + 16 * jj;
            if (cj >= pixels) return;
            long n = cj / plane;
            dx[(n * s.C + c) * plane + (cj - n * plane)] = jj == 0 ? v0 : jj == 1 ? v1 : jj == 2 ? v2 : v3;
        }
    }

    /// <summary>
    /// Backward-weight as an implicit GEMM with split reduction. Group (bx, by, bz) owns dw rows (output channels)
    /// by*64 .. +64, columns j = (c, r, q) bx*64 .. +64, and the reduction range (flattened (n, oy, ox))
    /// [bz*splitLen, +splitLen). Per 16-deep slice g: Ds (16, 64) = dy[n, k, oy, ox], Xs (16, 64) =
    /// x[n, c, oy*strideH - padH + r, ox*strideW - padW + q] (0 in the padding). Thread t loads reduction index
    /// g = slice + t % 16 (decoded once per slice) for rows / columns t / 16 + 16 i, whose (c, r, q) are decoded
    /// once per kernel. Results are added to dw atomically when the reduction is split over several groups.
    /// </summary>
    private static void BackwardWeightTiledKernel(ArrayView<float> dw, ArrayView<float> dy, ArrayView<float> x, ConvArgs s, int splitLen)
    {
        var Ds = SharedMemory.Allocate<float>(TileK * Tile);
        var Xs = SharedMemory.Allocate<float>(TileK * Tile);
        int t = Group.IdxX, tx = t % 16, ty = t / 16;
        int row0 = Grid.IdxY * Tile, col0 = Grid.IdxX * Tile;
        long g0 = (long)Grid.IdxZ * splitLen, g1 = Math.Min(s.Pixels, g0 + splitLen);
        int rs = s.R * s.S;
        long plane = (long)s.OutH * s.OutW, hw = (long)s.H * s.W;

        int lp = t % TileK, li = t / TileK;
        // This thread's 4 load columns j = col0 + li + 16 u: channel offset and filter tap (r, q); -1 past C*R*S.
        int j0 = col0 + li, j1 = j0 + 16, j2 = j0 + 32, j3 = j0 + 48;
        long xo0 = ColumnChannel(j0, s, rs) * hw, xo1 = ColumnChannel(j1, s, rs) * hw;
        long xo2 = ColumnChannel(j2, s, rs) * hw, xo3 = ColumnChannel(j3, s, rs) * hw;
        int r0 = ColumnRow(j0, s, rs), r1 = ColumnRow(j1, s, rs), r2 = ColumnRow(j2, s, rs), r3 = ColumnRow(j3, s, rs);
        int q0 = ColumnCol(j0, s, rs), q1 = ColumnCol(j1, s, rs), q2 = ColumnCol(j2, s, rs), q3 = ColumnCol(j3, s, rs);

        var acc = new RegisterTile();

        for (long gs = g0; gs < g1; gs += TileK)
        {
            long g = gs + lp;
            bool valid = g < g1;
            int n = 0, iyBase = 0, ixBase = 0;
            long dyBase = 0, xBase = 0;
            if (valid)
            {
                n = (int)(g / plane);
                int pix = (int)(g - n * plane);
                int oy = pix / s.OutW, ox = pix - oy * s.OutW;
                iyBase = oy * s.StrideH - s.PadH;
                ixBase = ox * s.StrideW - s.PadW;
                dyBase = (long)n * s.K * plane + pix;
                xBase = (long)n * s.C * hw;
            }
            for (int u = 0; u < 4; u++)
            {
                int k = row0 + li + 16 * u;
                Ds[lp * Tile + li + 16 * u] = valid && k < s.K ? dy[dyBase + k * plane] : 0f;
            }
            Xs[lp * Tile + li] = valid ? Im2colValue(x, s, xBase, xo0, r0, q0, iyBase, ixBase) : 0f;
            Xs[lp * Tile + li + 16] = valid ? Im2colValue(x, s, xBase, xo1, r1, q1, iyBase, ixBase) : 0f;
            Xs[lp * Tile + li + 32] = valid ? Im2colValue(x, s, xBase, xo2, r2, q2, iyBase, ixBase) : 0f;
            Xs[lp * Tile + li + 48] = valid ? Im2colValue(x, s, xBase, xo3, r3, q3, iyBase, ixBase) : 0f;
            Group.Barrier();

            acc.Accumulate(Ds, Xs, ty, tx);
            Group.Barrier();
        }

        bool atomic = Grid.DimZ > 1;
        int oc = col0 + tx;
        AddWeightRow(dw, s, atomic, row0 + ty, oc, acc.C00, acc.C01, acc.C02, acc.C03);
        AddWeightRow(dw, s, atomic, row0 + ty + 16, oc, acc.C10, acc.C11, acc.C12, acc.C13);
        AddWeightRow(dw, s, atomic, row0 + ty + 32, oc, acc.C20, acc.C21, acc.C22, acc.C23);
        AddWeightRow(dw, s, atomic, row0 + ty + 48, oc, acc.C30, acc.C31, acc.C32, acc.C33);
    }

    private static long ColumnChannel(int j, ConvArgs s, int rs) => j < s.Crs ? j / rs : -1;
    private static int ColumnRow(int j, ConvArgs s, int rs) => (j - j / rs * rs) / s.S;
    private static int ColumnCol(int j, ConvArgs s, int rs) => (j - j / rs * rs) % s.S;

    /// <summary>im2col(x)(j, g) for a column whose channel offset is xo (negative past C*R*S) and tap (r, q).</summary>
    private static float Im2colValue(ArrayView<float> x, ConvArgs s, long xBase, long xo, int r, int q, int iyBase, int ixBase)
    {
        int iy = iyBase + r, ix = ixBase + q;
        if (xo < 0 || iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return 0f;
        return x[xBase + xo + (long)iy * s.W + ix];
    }

    private static void AddWeightRow(ArrayView<float> dw, ConvArgs s, bool atomic, int k, int col,
        float v0, float v1, float v2, float v3)
    {
        if (k >= s.K) return;
        for (int jj = 0; jj < 4; jj++)
        {
            int j = col + 16 * jj;
            if (j >= s.Crs) return;
            float v = jj == 0 ? v0 : jj == 1 ? v1 : jj == 2 ? v2 : v3;
            long e = (long)k * s.Crs + j;
            if (atomic) Atomic.Add(ref dw[e], v);
            else dw[e] += v;
        }
    }

    /// <summary>db[k] += Σ_{n, oy, ox} dy[n, k, oy, ox]: one group of 256 threads per channel, each striding over the
    /// channel's planes, then a tree reduction in shared memory.</summary>
    private static void BiasGradTiledKernel(ArrayView<float> db, ArrayView<float> dy, ConvArgs s)
    {
        var partial = SharedMemory.Allocate<float>(Threads);
        int t = Group.IdxX, k = Grid.IdxX;
        long plane = (long)s.OutH * s.OutW;
        float sum = 0f;
        for (int n = 0; n < s.N; n++)
        {
            long b = ((long)n * s.K + k) * plane;
            for (long p = t; p < plane; p += Threads) sum += dy[b + p];
        }
        partial[t] = sum;
        Group.Barrier();
        for (int half = Threads / 2; half > 0; half /= 2)
        {
            if (t < half) partial[t] += partial[t + half];
            Group.Barrier();
        }
        if (t == 0) db[k] += partial[0];
    }
}
