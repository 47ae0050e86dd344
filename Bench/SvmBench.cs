using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using Tp7.Engine.Svm;

namespace Tp7.Bench;

/// <summary>
/// Linear SVM training, ours vs liblinear-train, on relu7-like features: 1200 × 4096, 15 classes, C = 1,
/// squared hinge, tol 1e-4 (liblinear -s 1 -c 1 -B 1 -e 0.0001). Validates (same training-set predictions as
/// liblinear-predict, coefficients within 1e-3 relative) before timing; reports our median of 3 after a warm-up
/// against liblinear's process wall time measured in the same run (its input file is written before timing).
/// Args: [--n 1200] [--d 4096] [--classes 15] [--C 1] [--reps 3] [--liblinear-reps 1] [--seed 0]
/// </summary>
public sealed class SvmBench : IBenchmark
{
    public string Name => "svm";
    public string Description => "linear SVM training (dual CD, one-vs-rest) vs liblinear-train -s 1 on 1200x4096 relu-like features";

    public int Run(string[] args)
    {
        int n = IntArg(args, "--n", 1200), d = IntArg(args, "--d", 4096), classes = IntArg(args, "--classes", 15);
        int reps = IntArg(args, "--reps", 3), llReps = IntArg(args, "--liblinear-reps", 1), seed = IntArg(args, "--seed", 0);
        double C = double.Parse(Arg(args, "--C") ?? "1", CultureInfo.InvariantCulture);
        var options = new SvmOptions(C: C, Loss: SvmLoss.SquaredHinge, Tolerance: 1e-4, MaxIterations: 1000, BiasScale: 1);

        Console.WriteLine($"svm: N={n} D={d} classes={classes} C={C} squared hinge tol=1e-4 bias=1; float32 features and weights, double gradients and dot-product sums");
        Console.WriteLine($"host: {CpuName()}, {Environment.ProcessorCount} logical cores, Vector256 accelerated={Vector256.IsHardwareAccelerated}; load average {LoadAverage()}");

        var sw = Stopwatch.StartNew();
        var (X, y) = ReluFeatures(n, d, classes, seed);
        Console.WriteLine($"data: generated in {sw.Elapsed.TotalSeconds:F2} s");

        string dir = Directory.CreateTempSubdirectory("tp7-svmbench-").FullName;
        try
        {
            string prob = Path.Combine(dir, "train.txt"), model = Path.Combine(dir, "model.txt"), pred = Path.Combine(dir, "pred.txt");
            LibLinearInterop.WriteProblem(prob, X, n, d, y);   // not timed

            // ---- validate (this run doubles as our warm-up)
            var ours = LinearSvm.TrainOneVsRest(X, n, d, y, options);
            foreach (var w in ours.Warnings) Console.WriteLine($"warning: {w}");
            var llTimes = new double[llReps];
            var llCpu = new double[llReps];
            for (int r = 0; r < llReps; r++)
            {
                double c0 = ChildrenCpuSeconds();
                long t0 = Stopwatch.GetTimestamp();
                LibLinearInterop.RunTool("liblinear-train", LibLinearInterop.TrainArgs(options, prob, model), TimeSpan.FromMinutes(10));
                llTimes[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                llCpu[r] = ChildrenCpuSeconds() - c0;
            }
            LibLinearInterop.RunTool("liblinear-predict", ["-q", prob, model, pred]);
            var llPred = LibLinearInterop.ReadPredictions(pred);
            var ll = LibLinearInterop.ReadModel(model, d);
            var oursPred = ours.PredictBatch(X, n);
            int agree = oursPred.Zip(llPred).Count(p => p.First == p.Second);
            double rel = MaxRelativeDiff(ours, ll, d);
            double acc = oursPred.Zip(y).Count(p => p.First == p.Second) / (double)n;
            Console.WriteLine($"validate: predictions equal to liblinear's on {agree}/{n} training rows; max relative coefficient " +
                              $"difference {rel:E2} (per class, max |Δ| over w and bias / max |w_liblinear|); training accuracy {acc:F4}; " +
                              $"our iterations per class min {ours.Iterations.Min()} median {Median(ours.Iterations)} max {ours.Iterations.Max()}");
            bool ok = agree == n && rel <= 1e-3;
            if (!ok) Console.WriteLine("validate: FAILED (predictions or coefficients differ from liblinear)");

            // ---- time ours
            var oursCpu = new double[reps];
            int rep = 0;
            double oursMedian = Timing.Median(() =>
            {
                double c0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
                LinearSvm.TrainOneVsRest(X, n, d, y, options);
                oursCpu[rep++] = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - c0;
            }, reps, warm: 0);
            Array.Sort(llTimes);
            double llMedian = llTimes[llTimes.Length / 2], llCpuMedian = Median(llCpu), oursCpuMedian = Median(oursCpu);
            Console.WriteLine($"time: ours {oursMedian:F3} s wall (median of {reps}, {Environment.ProcessorCount} threads; CPU {oursCpuMedian:F3} s), " +
                              $"liblinear-train {llMedian:F3} s wall (median of {llReps}, 1 thread; CPU {llCpuMedian:F3} s)");
            Console.WriteLine($"speed-up: {llMedian / oursMedian:F1}x wall (target >= 10x), {llCpuMedian / oursCpuMedian:F1}x CPU time; " +
                              $"load average now {LoadAverage()}: on a shared machine wall times are noisy");
            return ok ? 0 : 1;
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>
    /// relu7-like rows: f = ReLU(P·z), z = μ_k + σ·ε in a 128-d latent space, P a fixed Gaussian projection to D,
    /// plus a little independent noise before the ReLU; then L2-normalised. Non-negative and about half zeros,
    /// like VGG16's relu7 features; σ makes the 15 classes partly overlap.
    /// </summary>
    internal static (float[] X, int[] y) ReluFeatures(int n, int d, int classes, int seed)
    {
        const int latent = 128;
        var rng = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        var P = new float[d * latent];   // (D, latent)
        for (int i = 0; i < P.Length; i++) P[i] = (float)(Gauss() / Math.Sqrt(latent));
        var mu = new double[classes, latent];
        for (int k = 0; k < classes; k++) for (int j = 0; j < latent; j++) mu[k, j] = Gauss();
        var X = new float[(long)n * d];
        var y = new int[n];
        var z = new float[latent];
        var noise = new float[d];
        for (int i = 0; i < n; i++)
        {
            y[i] = i % classes;   // balanced; liblinear sees labels in order 0..14
            for (int j = 0; j < latent; j++) z[j] = (float)(mu[y[i], j] + 1.2 * Gauss());
            for (int r = 0; r < d; r++) noise[r] = (float)(0.3 * Gauss());
            var row = X.AsSpan(i * d, d);
            for (int r = 0; r < d; r++)
                row[r] = Math.Max(noise[r] + Dot(P.AsSpan(r * latent, latent), z), 0f);
            double norm = 0;
            foreach (float v in row) norm += (double)v * v;
            float inv = norm > 0 ? (float)(1 / Math.Sqrt(norm)) : 0;
            foreach (ref float v in row) v *= inv;
        }
        return (X, y);
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var acc = System.Numerics.Vector<float>.Zero;
        int j = 0, w = System.Numerics.Vector<float>.Count;
        for (; j <= a.Length - w; j += w) acc += new System.Numerics.Vector<float>(a[j..]) * new System.Numerics.Vector<float>(b[j..]);
        float s = System.Numerics.Vector.Sum(acc);
        for (; j < a.Length; j++) s += a[j] * b[j];
        return s;
    }

    private static double MaxRelativeDiff(LinearSvmModel ours, LibLinearInterop.Model ll, int d)
    {
        double worst = 0;
        for (int k = 0; k < ours.NumClassifiers; k++)
        {
            double scale = Math.Abs(ll.SortedBias[k]), diff = Math.Abs(ours.Bias[k] - ll.SortedBias[k]);
            for (int j = 0; j < d; j++)
            {
                scale = Math.Max(scale, Math.Abs(ll.SortedW[k * d + j]));
                diff = Math.Max(diff, Math.Abs(ours.W[k * d + j] - ll.SortedW[k * d + j]));
            }
            worst = Math.Max(worst, diff / scale);
        }
        return worst;
    }

    private static double Median(int[] v) { var s = v.Order().ToArray(); return s[s.Length / 2]; }
    private static double Median(double[] v) { var s = v.Order().ToArray(); return s[s.Length / 2]; }

    // CPU seconds (user + system) of terminated, waited-for child processes: getrusage(RUSAGE_CHILDREN).
    internal static double ChildrenCpuSeconds()
    {
        if (!OperatingSystem.IsLinux()) return double.NaN;
        var ru = new long[18];
        return getrusage(-1, ru) == 0 ? ru[0] + ru[1] * 1e-6 + ru[2] + ru[3] * 1e-6 : double.NaN;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int getrusage(int who, long[] usage);
    static string? Arg(string[] a, string name) => BenchArgs.Arg(a, name);
    static int IntArg(string[] a, string name, int def) => BenchArgs.Int(a, name, def);

    internal static string CpuName()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "unknown CPU"; }
        catch (IOException) { return "unknown CPU"; }
    }

    internal static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
    }
}
