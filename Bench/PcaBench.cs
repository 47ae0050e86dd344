using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using Tp7.Engine.Analysis;
using Tp7.Engine.IO;
using Tp7.Engine.Svm;

namespace Tp7.Bench;

/// <summary>
/// PCA fit, ours (GEMM + MathNet symmetric EVD) vs scikit-learn's PCA(svd_solver='full') and 'randomized' on the
/// same relu-like matrix (SvmBench.ReluFeatures), one size after another. Validates first (explained-variance ratios
/// within 1e-4 of the full solver's, the leading components' dot products), then reports our median of --reps
/// fits after a warm-up, with all cores and with --threads (the sweep's per-fit limit), against scikit-learn's
/// median fit time measured inside Python (tools/pca_reference.py --repeat; loading excluded).
/// Args: [--n 1200] [--d 25088,4096,1000] [--k 256] [--reps 3] [--sk-reps 3] [--threads 1] [--seed 0]
/// [--solvers full,randomized] ('full' is always run: it is the validation reference)
/// </summary>
public sealed class PcaBench : IBenchmark
{
    public string Name => "pca";
    public string Description => "PCA fit (GEMM + symmetric EVD) vs scikit-learn PCA full/randomized on 1200 x {25088, 4096, 1000}";

    public int Run(string[] args)
    {
        int n = IntArg(args, "--n", 1200), k = IntArg(args, "--k", 256), reps = IntArg(args, "--reps", 3);
        int skReps = IntArg(args, "--sk-reps", 3), threads = IntArg(args, "--threads", 1), seed = IntArg(args, "--seed", 0);
        var solvers = (Arg(args, "--solvers") ?? "full,randomized").Split(',').Append("full").Distinct().OrderBy(s => s != "full").ToArray();
        var dims = (Arg(args, "--d") ?? "25088,4096,1000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        string script = Path.Combine(RepoRoot(), "tools", "pca_reference.py");
        Console.WriteLine($"pca: N={n} K={k}; float32 GEMM, double EVD (MathNet.Numerics managed provider); scikit-learn on float64");
        Console.WriteLine($"host: {Environment.ProcessorCount} logical cores, Vector256 accelerated={Vector256.IsHardwareAccelerated}; load average {LoadAverage()}");
        bool ok = true;
        string dir = Directory.CreateTempSubdirectory("tp7-pcabench-").FullName;
        try
        {
            foreach (int d in dims)
            {
                int kk = Math.Min(k, Math.Min(n, d));
                var (X, _) = SvmBench.ReluFeatures(n, d, 15, seed);
                string x = Path.Combine(dir, $"X{d}.npy");
                Npy.Write(x, X, n, d);   // not timed

                // ---- validate (also our warm-up)
                var ours = PcaModel.Fit(X, n, d, kk);
                var sk = new Dictionary<string, (double[] Ratio, double[] Components, double Median)>();
                foreach (var solver in solvers)
                {
                    string outDir = Path.Combine(dir, $"{solver}{d}");
                    LibLinearInterop.RunTool("/usr/bin/python3", [script, x, outDir, "--k", kk.ToString(CultureInfo.InvariantCulture),
                        "--solver", solver, "--repeat", skReps.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromMinutes(20));
                    var times = Npy.ReadFloat64(Path.Combine(outDir, "fit_seconds.npy")).Data.Order().ToArray();
                    sk[solver] = (Npy.ReadFloat64(Path.Combine(outDir, "explained_variance_ratio.npy")).Data,
                        Npy.ReadFloat64(Path.Combine(outDir, "components.npy")).Data, times[times.Length / 2]);
                }
                var full = sk["full"];
                double ratioErr = ours.ExplainedVarianceRatio.Select((v, i) => Math.Abs(v - full.Ratio[i])).Max();
                double randErr = sk.TryGetValue("randomized", out var rnd) ? rnd.Ratio.Select((v, i) => Math.Abs(v - full.Ratio[i])).Max() : double.NaN;
                int lead = Math.Min(10, kk);
                double minDot = Enumerable.Range(0, lead).Min(c =>
                {
                    double dot = 0;
                    for (int j = 0; j < d; j++) dot += ours.ComponentsRowMajor[(long)c * d + j] * full.Components[(long)c * d + j];
                    return dot;
                });
                // Orthonormality of all K rows: V Vᵀ through the GEMM, compared with I.
                var vvt = new float[kk * kk];
                Tp7.Engine.Kernels.Gemm.Host(vvt, ours.ComponentsRowMajor, ours.ComponentsRowMajor,
                    new Tp7.Engine.Kernels.GemmShape(kk, kk, d, TransB: true));
                double ortho = Enumerable.Range(0, kk * kk).Max(i => Math.Abs(vvt[i] - (i / kk == i % kk ? 1.0 : 0.0)));
                Console.WriteLine($"validate D={d}: ratios max |Δ| vs full {ratioErr:E2} (randomized's own {randErr:E2}); " +
                                  $"first {lead} components min dot {minDot:F6}; max |V Vt - I| {ortho:E2}; ratio sum over K {ours.ExplainedVarianceRatio.Sum():F4}");
                bool good = ratioErr <= 1e-4 && minDot >= 0.999 && ortho <= 1e-3;
                if (!good) Console.WriteLine($"validate D={d}: FAILED");
                ok &= good;

                // ---- time ours: all cores, then the per-fit limit the sweep uses
                double cpu0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
                double all = Timing.Median(() => PcaModel.Fit(X, n, d, kk), reps, warm: 0);
                double cpuAll = (Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - cpu0) / reps;
                cpu0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
                double limited = Timing.Median(() => PcaModel.Fit(X, n, d, kk, maxThreads: threads), reps, warm: 0);
                double cpuLimited = (Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - cpu0) / reps;
                Console.WriteLine($"time D={d} ({(n < d ? "Gram" : "covariance")} {Math.Min(n, d)}^2): ours {all:F2} s wall, " +
                                  $"{cpuAll:F2} s CPU ({Environment.ProcessorCount} threads), {limited:F2} s wall, {cpuLimited:F2} s CPU ({threads} thread(s)); " +
                                  $"scikit-learn {string.Join(", ", sk.Select(p => $"{p.Key} {p.Value.Median:F2} s"))} (medians of {skReps}); " +
                                  string.Join(", ", sk.Select(p => $"{p.Key}/ours {p.Value.Median / all:F2}x")));
            }
            Console.WriteLine($"load average now {LoadAverage()}: on a shared machine wall times are noisy");
            return ok ? 0 : 1;
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static string RepoRoot() => ForwardComparisonBench.RepositoryRoot();

    static string? Arg(string[] a, string name) => BenchArgs.Arg(a, name);
    static int IntArg(string[] a, string name, int def) => BenchArgs.Int(a, name, def);

    static string LoadAverage() => SvmBench.LoadAverage();
}
