using System.Runtime.Intrinsics.X86;
using Tp7.Engine.Kernels;

namespace Tp7.Bench;

/// <summary>
/// The CPU backend's hot ops: GEMM, every distinct VGG16 conv layer at batch 8 (fp32), pool and relu.
/// Validates each fast version against its V1 specification on a small shape, then times medians.
/// Args: [--batch N] [--reps N] [--quick] [--only conv1_2,gemm,...] [--versions auto,v2,v3,v4,v5] [--backward]
/// [--data-versions auto,v2,v3,v4] (quick: fewer
/// reps, skips the GEMM 4096 case; versions: conv forward versions to time one after another in this process, or with
/// --backward the backward-weight versions; data-versions: with --backward, the backward-data versions; backward: time the conv layers' backward-data (the host entry point) and
/// backward-weight instead of the forward).
/// </summary>
public sealed class HostOpsBench : IBenchmark
{
    public string Name => "hostops";
    public string Description => "host GEMM / VGG16 conv layers / pool / relu: validate vs V1, then GFLOP/s";

    // VGG16 (torchvision "D"): (name, C, K, H=W, how many layers of this shape).
    static readonly (string Name, int C, int K, int Hw, int Count)[] VggConvs =
    [
        ("conv1_1", 3, 64, 224, 1), ("conv1_2", 64, 64, 224, 1),
        ("conv2_1", 64, 128, 112, 1), ("conv2_2", 128, 128, 112, 1),
        ("conv3_1", 128, 256, 56, 1), ("conv3_x", 256, 256, 56, 2),
        ("conv4_1", 256, 512, 28, 1), ("conv4_x", 512, 512, 28, 2),
        ("conv5_x", 512, 512, 14, 3),
    ];

    /// <summary>
    /// Median wall seconds, and CPU seconds per run (all threads). flops / CPU seconds is the speed per busy core,
    /// which stays meaningful when other processes share the cores; wall time does not.
    /// </summary>
    static (double Wall, double Cpu) Measure(Action action, int reps)
    {
        action();
        var proc = System.Diagnostics.Process.GetCurrentProcess();
        proc.Refresh();
        var cpu0 = proc.TotalProcessorTime;
        double wall = Timing.Median(action, reps, warm: 0);
        proc.Refresh();
        return (wall, (proc.TotalProcessorTime - cpu0).TotalSeconds / reps);
    }

    public int Run(string[] args)
    {
        int batch = 8, reps = 3;
        bool quick = false, backward = false;
        string? only = null;
        string[] versions = ["auto"], dataVersions = ["auto"];
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--batch": batch = int.Parse(args[++i]); break;
                case "--reps": reps = int.Parse(args[++i]); break;
                case "--quick": quick = true; reps = 1; break;
                case "--only": only = args[++i]; break;
                case "--versions": versions = args[++i].Split(','); break;
                case "--backward": backward = true; break;
                case "--data-versions": dataVersions = args[++i].Split(','); break;
                default: Console.Error.WriteLine($"hostops: unknown argument '{args[i]}'"); return 2;
            }
        Console.WriteLine($"device: host CPU, {Environment.ProcessorCount} cores, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}; fp32; batch {batch}; median of {reps}");
        if (!Validate()) return 1;

        var rng = new Random(1);
        float[] Rand(long n) { var v = new float[n]; for (long i = 0; i < n; i++) v[i] = rng.NextSingle() - 0.5f; return v; }

        if (backward)
        {
            ConvBackwards(batch, reps, only, versions, dataVersions, Rand);
            Footer();
            return 0;
        }
        if (only == null || only.Split(',').Contains("gemm")) Gemms(quick, reps, Rand);
        if (only == null || only.Split(',').Contains("fc")) Linears(batch, reps, Rand);
        Convs(batch, reps, only, versions, Rand);
        if (only == null) PoolRelu(batch, reps, Rand);
        Footer();
        return 0;
    }

    static void Gemms(bool quick, int reps, Func<long, float[]> Rand)
    {
        Console.WriteLine("\nGEMM (row-major, C = A B)");
        foreach (var (m, n, k) in quick ? new[] { (144, 256, 256), (1024, 1024, 1024) }
                     : new[] { (144, 256, 256), (1024, 1024, 1024), (4096, 4096, 512), (8, 4096, 25088) })
        {
            bool fc = m == 8;
            var s = new GemmShape(m, n, k, TransB: fc);
            var a = Rand((long)m * k); var b = Rand((long)k * n); var c = new float[(long)m * n];
            // The 144x256x256 case fits in L2: it shows the micro-kernel's ceiling without memory traffic.
            int inner = m * n * k < 1 << 24 ? 50 : 1;
            var (t, cpu) = Measure(() => { for (int r = 0; r < inner; r++) Gemm.Host(c, a, b, s); }, reps);
            t /= inner; cpu /= inner;
            Console.WriteLine($"  {m}x{n}x{k}{(fc ? " TransB (fc6)" : ""),-14} {t * 1e3,9:F2} ms  {s.Flops / t / 1e9,7:F1} GFLOP/s  {s.Bytes / t / 1e9,6:F1} GB/s  {s.Flops / cpu / 1e9,6:F1} GFLOP/s per busy core");
        }

    }

    /// <summary>VGG16's classifier (y = x Wᵀ + b, ReLU) at this batch and at batch 1, through the thin-rows GEMM's V1 and V2
    /// back to back. These layers stream their weights (fc6: 411 MB) for few rows: GB/s of weights is the measure.</summary>
    static void Linears(int batch, int reps, Func<long, float[]> Rand)
    {
        Console.WriteLine("\nVGG16 classifier, y = x Wᵀ (+ b, ReLU in the layer), thin-rows GEMM V1 (8-row padded) vs V2");
        foreach (var m in batch == 1 ? new[] { 1 } : new[] { 1, batch })
            foreach (var (name, n, k) in new[] { ("fc6", 4096, 25088), ("fc7", 4096, 4096), ("fc8", 1000, 4096) })
            {
                var s = new GemmShape(m, n, k, TransB: true);
                var a = Rand((long)m * k); var b = Rand((long)k * n); var c = new float[(long)m * n];
                foreach (var (version, run) in new (string, Action)[] { ("v1", () => Gemm.Host_V2BlockedThinV1(c, a, b, s)), ("v2", () => Gemm.Host(c, a, b, s)) })
                {
                    var (t, cpu) = Measure(run, reps);
                    Console.WriteLine($"  {name} batch {m,-2} {version}  {t * 1e3,8:F2} ms  {4.0 * n * k / t / 1e9,6:F1} GB/s of weights  {s.Flops / t / 1e9,6:F1} GFLOP/s  CPU {cpu * 1e3,7:F1} ms");
                }
            }
    }

    /// <summary>Conv forward versions the bench can run by name; "auto" is the dispatcher <see cref="Conv2d.ForwardHost"/>.</summary>
    static readonly Dictionary<string, Action<float[], float[], float[], float[], ConvShape>> ConvVersions = new()
    {
        ["auto"] = (y, x, w, b, s) => Conv2d.ForwardHost(y, x, w, b, s, relu: true),
        ["v2"] = (y, x, w, b, s) => Conv2d.ForwardHost_V2Im2colGemm(y, x, w, b, s, relu: true),
        ["v3"] = (y, x, w, b, s) => Conv2d.ForwardHost_V3Winograd(y, x, w, b, s, relu: true),
        ["v4"] = (y, x, w, b, s) => Conv2d.ForwardHost_V4Winograd4x4(y, x, w, b, s, relu: true),
        ["v5"] = (y, x, w, b, s) => Conv2d.ForwardHost_V5BatchedGemm(y, x, w, b, s, relu: true),
        ["v6"] = (y, x, w, b, s) => Conv2d.ForwardHost_V6DirectSmallC(y, x, w, b, s, relu: true),
    };

    /// <summary>Each selected layer is timed under every requested version back to back, so the versions see the
    /// same machine load; totals per version follow.</summary>
    static void Convs(int batch, int reps, string? only, string[] versions, Func<long, float[]> Rand)
    {
        foreach (var v in versions)
            if (!ConvVersions.ContainsKey(v)) throw new ArgumentException($"hostops --versions: unknown conv version '{v}' (known: {string.Join(", ", ConvVersions.Keys)})");
        Console.WriteLine($"\nVGG16 conv layers, batch {batch}, 3x3 pad 1, bias + ReLU fused (GFLOP/s count the direct convolution's 2·K·C·9 per output)");
        var total = new double[versions.Length]; var totalCpu = new double[versions.Length];
        double totalFlops = 0;
        foreach (var (name, c, k, hw, count) in VggConvs)
        {
            if (only != null && !only.Split(',').Contains(name)) continue;
            var s = ConvShape.Square(batch, c, hw, hw, k, 3, 1, 1);
            var x = Rand(s.InputLength); var w = Rand(s.WeightLength); var bias = Rand(k); var y = new float[s.OutputLength];
            totalFlops += s.ForwardFlops * count;
            for (int vi = 0; vi < versions.Length; vi++)
            {
                var run = ConvVersions[versions[vi]];
                var (t, cpu) = Measure(() => run(y, x, w, bias, s), reps);
                total[vi] += t * count; totalCpu[vi] += cpu * count;
                Console.WriteLine($"  {name,-8} {versions[vi],-4} C{c,-4} K{k,-4} {hw,3}²  x{count}  {t * 1e3,9:F1} ms/layer  {s.ForwardFlops / t / 1e9,7:F1} GFLOP/s  {s.ForwardFlops / cpu / 1e9,6:F1} per busy core");
            }
        }
        for (int vi = 0; vi < versions.Length; vi++)
        {
            Console.WriteLine($"  {versions[vi]}: {(only == null ? "all 13 conv layers" : "selected layers (x count)")}: {total[vi]:F3} s for batch {batch} = {total[vi] / batch:F3} s/image, {totalFlops / total[vi] / 1e9:F1} GFLOP/s sustained");
            Console.WriteLine($"  {versions[vi]}: per busy core: {totalFlops / totalCpu[vi] / 1e9:F1} GFLOP/s; on {Environment.ProcessorCount} idle cores that is ≈ {totalCpu[vi] / Environment.ProcessorCount / batch:F3} s/image");
        }
    }

    /// <summary>Backward-weight versions the bench can run by name; "auto" is the dispatcher <see cref="Conv2d.BackwardWeightHost"/>.</summary>
    static readonly Dictionary<string, Action<float[], float[], float[], float[], ConvShape>> WeightVersions = new()
    {
        ["auto"] = (dw, db, dy, x, s) => Conv2d.BackwardWeightHost(dw, db, dy, x, s),
        ["v1"] = (dw, db, dy, x, s) => Conv2d.BackwardWeightHost_V1Naive(dw, db, dy, x, s),
        ["v2"] = (dw, db, dy, x, s) => Conv2d.BackwardWeightHost_V2Im2colGemm(dw, db, dy, x, s),
        ["v3"] = (dw, db, dy, x, s) => Conv2d.BackwardWeightHost_V3Winograd(dw, db, dy, x, s),
    };

    /// <summary>Backward-data versions the bench can run by name: "auto" is the dispatcher <see cref="Conv2d.BackwardDataHost"/>;
    /// v3 and v4 run the flipped forward on F(2x2) and F(4x4) Winograd whatever K is.</summary>
    static readonly Dictionary<string, Action<float[], float[], float[], ConvShape>> DataVersions = new()
    {
        ["auto"] = (dx, dy, w, s) => Conv2d.BackwardDataHost(dx, dy, w, s),
        ["v2"] = (dx, dy, w, s) => Conv2d.BackwardDataHost_V2Col2im(dx, dy, w, s),
        ["v3"] = (dx, dy, w, s) => Conv2d.BackwardDataHost_V3FlippedForward(dx, dy, w, s, Conv2d.ForwardHost_V3Winograd),
        ["v4"] = (dx, dy, w, s) => Conv2d.BackwardDataHost_V3FlippedForward(dx, dy, w, s, Conv2d.ForwardHost_V4Winograd4x4),
    };

    /// <summary>Backward-data (dx = conv_transpose(dy, w), the host entry point) and backward-weight (dw += dy · im2col(x)ᵀ,
    /// db += Σ dy) under each requested version, of each selected VGG16 layer, timed back to back so the versions see
    /// the same machine load; totals for the selected layers follow.</summary>
    static void ConvBackwards(int batch, int reps, string? only, string[] versions, string[] dataVersions, Func<long, float[]> Rand)
    {
        foreach (var v in dataVersions)
            if (!DataVersions.ContainsKey(v)) throw new ArgumentException($"hostops --backward --data-versions: unknown backward-data version '{v}' (known: {string.Join(", ", DataVersions.Keys)})");
        foreach (var v in versions)
            if (!WeightVersions.ContainsKey(v)) throw new ArgumentException($"hostops --backward --versions: unknown backward-weight version '{v}' (known: {string.Join(", ", WeightVersions.Keys)})");
        Console.WriteLine($"\nVGG16 conv layers backward, batch {batch}, 3x3 pad 1 (GFLOP/s count the direct convolution's 2·K·C·9 per output)");
        var totalData = new double[dataVersions.Length]; var totalDataCpu = new double[dataVersions.Length];
        double totalFlops = 0;
        var totalWeight = new double[versions.Length]; var totalWeightCpu = new double[versions.Length];
        foreach (var (name, c, k, hw, count) in VggConvs)
        {
            if (only != null && !only.Split(',').Contains(name)) continue;
            var s = ConvShape.Square(batch, c, hw, hw, k, 3, 1, 1);
            var x = Rand(s.InputLength); var w = Rand(s.WeightLength); var dy = Rand(s.OutputLength);
            var dx = new float[s.InputLength]; var dw = new float[s.WeightLength]; var db = new float[k];
            totalFlops += s.BackwardWeightFlops * count;
            for (int vi = 0; vi < dataVersions.Length; vi++)
            {
                var run = DataVersions[dataVersions[vi]];
                var (td, cd) = Measure(() => run(dx, dy, w, s), reps);
                totalData[vi] += td * count; totalDataCpu[vi] += cd * count;
                Console.WriteLine($"  {name,-8} C{c,-4} K{k,-4} {hw,3}²  x{count}  data   {dataVersions[vi],-4} {td * 1e3,8:F1} ms {s.BackwardDataFlops / td / 1e9,6:F1} GFLOP/s {s.BackwardDataFlops / cd / 1e9,6:F1} per busy core");
            }
            for (int vi = 0; vi < versions.Length; vi++)
            {
                var run = WeightVersions[versions[vi]];
                var (tw, cw) = Measure(() => run(dw, db, dy, x, s), reps);
                totalWeight[vi] += tw * count; totalWeightCpu[vi] += cw * count;
                Console.WriteLine($"  {name,-8} C{c,-4} K{k,-4} {hw,3}²  x{count}  weight {versions[vi],-4} {tw * 1e3,8:F1} ms {s.BackwardWeightFlops / tw / 1e9,6:F1} GFLOP/s {s.BackwardWeightFlops / cw / 1e9,6:F1} per busy core");
            }
        }
        string what = only == null ? "all 13 conv layers" : "selected layers (x count)";
        for (int vi = 0; vi < dataVersions.Length; vi++)
            Console.WriteLine($"  {what}: backward-data {dataVersions[vi]}: {totalData[vi]:F3} s ({totalFlops / totalDataCpu[vi] / 1e9:F1} GFLOP/s per busy core)");
        for (int vi = 0; vi < versions.Length; vi++)
            Console.WriteLine($"  {what}: backward-weight {versions[vi]}: {totalWeight[vi]:F3} s ({totalFlops / totalWeight[vi] / 1e9:F1} GFLOP/s, " +
                              $"{totalFlops / totalWeightCpu[vi] / 1e9:F1} per busy core); data {dataVersions[0]} + weight {totalData[0] + totalWeight[vi]:F3} s for batch {batch}");
    }

    static void PoolRelu(int batch, int reps, Func<long, float[]> Rand)
    {
        Console.WriteLine("\npool / relu (VGG pool1 input, batch " + batch + ")");
        {
            var ps = new PoolShape(batch, 64, 224, 224, 2, 2, 2, 2);
            var x = Rand(ps.InputLength); var y = new float[ps.OutputLength];
            double t = Timing.Median(() => Pooling.MaxForwardHost(y, x, ps), reps);
            Console.WriteLine($"  maxpool 2x2/2   {t * 1e3,8:F2} ms  {ps.Bytes / t / 1e9,6:F1} GB/s");
            double tr = Timing.Median(() => Activations.ReluHost(x, x), reps);
            Console.WriteLine($"  relu in place   {tr * 1e3,8:F2} ms  {8.0 * x.Length / tr / 1e9,6:F1} GB/s");
        }
    }

    static void Footer()
    {
        Console.WriteLine("\n(timings on a shared machine are noisy; compare ratios measured in the same run)");
    }

    /// <summary>Fast versions against V1 on small odd shapes; prints the worst error and fails the run on a mismatch.</summary>
    static bool Validate()
    {
        var rng = new Random(2);
        float[] Rand(long n) { var v = new float[n]; for (long i = 0; i < n; i++) v[i] = 2 * rng.NextSingle() - 1; return v; }
        bool ok = true;
        void Compare(string what, float[] expected, float[] actual)
        {
            double worst = 0;
            for (int i = 0; i < expected.Length; i++)
                worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]) / (1e-4 + 1e-4 * Math.Abs(expected[i])));
            bool pass = worst <= 1;
            ok &= pass;
            Console.WriteLine($"  validate {what,-40} {(pass ? "ok" : "MISMATCH")} (worst |Δ| / (1e-4 + 1e-4|ref|) = {worst:F3})");
        }
        foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            var s = new GemmShape(67, 45, 301, ta, tb, Alpha: 0.5f, Beta: 0.25f);
            var a = Rand(67 * 301); var b = Rand(301 * 45); var c0 = Rand(67 * 45);
            var e = (float[])c0.Clone(); var f = (float[])c0.Clone();
            Gemm.Host_V1Naive(e, a, b, s); Gemm.Host(f, a, b, s);
            Compare($"gemm 67x45x301 ta={ta} tb={tb}", e, f);
        }
        {
            var s = ConvShape.Square(2, 13, 21, 17, 19, 3, 1, 1);
            var x = Rand(s.InputLength); var w = Rand(s.WeightLength); var b = Rand(s.K);
            var e = new float[s.OutputLength]; var f = new float[s.OutputLength];
            Conv2d.ForwardHost_V1Naive(e, x, w, b, s, true); Conv2d.ForwardHost(f, x, w, b, s, true);
            Compare("conv 2x13x21x17 -> 19, 3x3 pad 1", e, f);
            Conv2d.ForwardHost_V2Im2colGemm(f, x, w, b, s, true);
            Compare("conv V2 2x13x21x17 -> 19", e, f);
            Conv2d.ForwardHost_V3Winograd(f, x, w, b, s, true);
            Compare("conv V3 Winograd 2x13x21x17 -> 19", e, f);
            Conv2d.ForwardHost_V4Winograd4x4(f, x, w, b, s, true);
            Compare("conv V4 Winograd 4x4 2x13x21x17 -> 19", e, f);
            Conv2d.ForwardHost_V5BatchedGemm(f, x, w, b, s, true);
            Compare("conv V5 batched GEMM 2x13x21x17 -> 19", e, f);
        }
        {
            // Backward on a shape whose dx goes through the flipped forward on Winograd (K ≥ 64).
            var s = ConvShape.Square(2, 13, 21, 17, 64, 3, 1, 1);
            var x = Rand(s.InputLength); var w = Rand(s.WeightLength); var dy = Rand(s.OutputLength);
            var e = new float[s.InputLength]; var f = new float[s.InputLength];
            Conv2d.BackwardDataHost_V1Naive(e, dy, w, s); Conv2d.BackwardDataHost(f, dy, w, s);
            Compare("conv backward-data 2x13x21x17 <- 64", e, f);
            var ew = new float[s.WeightLength]; var fw = new float[s.WeightLength]; var eb = new float[s.K]; var fb = new float[s.K];
            Conv2d.BackwardWeightHost_V1Naive(ew, eb, dy, x, s); Conv2d.BackwardWeightHost(fw, fb, dy, x, s);
            Compare("conv backward-weight 2x13x21x17 -> 64", ew, fw);
            var gw = new float[s.WeightLength]; var gb = new float[s.K];
            Conv2d.BackwardWeightHost_V3Winograd(gw, gb, dy, x, s);
            Compare("conv backward-weight V3 Winograd 2x13x21x17 -> 64", ew, gw);
            Compare("conv backward-bias 64", eb, fb);
        }
        // After the others, so their seeded inputs stay as they were.
        {
            var s = ConvShape.Square(2, 3, 21, 19, 13, 3, 1, 1);
            var x = Rand(s.InputLength); var w = Rand(s.WeightLength); var b = Rand(s.K);
            var e = new float[s.OutputLength]; var f = new float[s.OutputLength];
            Conv2d.ForwardHost_V1Naive(e, x, w, b, s, true); Conv2d.ForwardHost_V6DirectSmallC(f, x, w, b, s, true);
            Compare("conv V6 direct 2x3x21x19 -> 13", e, f);
        }
        return ok;
    }
}
