using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Bench;

/// <summary>
/// The memory-bound ops of a VGG16 host training step at their VGG16 sizes: max-pool backward (each pool), ReLU
/// backward in place (conv1_2's output), adaptive-avg-pool backward (7x7 to 7x7), dropout (fc6's output), the SGD
/// step over all 138 M parameters and the clear of their gradient block. Each fast version is validated bit for bit
/// against its V1 on a small shape first; then V1 and the entry point are timed back to back (medians), with GB/s
/// from the bytes each must move (reads + writes).
/// Args: [--batch 8] [--reps 5] [--only pool,relu,avgpool,dropout,sgd,clear]
/// </summary>
public sealed class HostTrainOpsBench : IBenchmark
{
    public string Name => "hostops-train";
    public string Description => "host training-step element-wise ops (pool/relu backward, SGD, clear): validate vs V1, then GB/s";

    const long Vgg16Parameters = 138_357_544;

    static readonly (string Name, int C, int Hw)[] VggPools =
        [("pool1", 64, 224), ("pool2", 128, 112), ("pool3", 256, 56), ("pool4", 512, 28), ("pool5", 512, 14)];

    public int Run(string[] args)
    {
        int batch = 8, reps = 5;
        string[]? only = null;
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--batch": batch = int.Parse(args[++i]); break;
                case "--reps": reps = int.Parse(args[++i]); break;
                case "--only": only = args[++i].Split(','); break;
                default: Console.Error.WriteLine($"hostops-train: unknown argument '{args[i]}'"); return 2;
            }
        bool Want(string what) => only == null || only.Contains(what);
        Console.WriteLine($"device: host CPU, {Environment.ProcessorCount} cores, {HostInfoText()}; fp32; batch {batch}; median of {reps}");
        if (!Validate()) return 1;

        var rng = new Random(1);
        float[] Rand(long n) { var v = new float[n]; for (long i = 0; i < n; i++) v[i] = rng.NextSingle() - 0.5f; return v; }
        void Row(string what, string version, double bytes, Action run)
        {
            double t = Timing.Median(run, reps);
            Console.WriteLine($"  {what,-36} {version,-4} {t * 1e3,9:F2} ms  {bytes / t / 1e9,6:F1} GB/s");
        }

        if (Want("pool"))
        {
            Console.WriteLine($"\nmax-pool 2x2/2 backward (reads x, dy; writes dx), batch {batch}");
            double v1Total = 0, v2Total = 0;
            foreach (var (name, c, hw) in VggPools)
            {
                var s = new PoolShape(batch, c, hw, hw, 2, 2, 2, 2);
                var x = Rand(s.InputLength); var dy = Rand(s.OutputLength); var dx = new float[s.InputLength];
                double bytes = 4.0 * (2 * s.InputLength + s.OutputLength);
                string what = $"{name} {c}x{hw}²";
                double t1 = Timing.Median(() => Pooling.MaxBackwardHost_V1Naive(dx, dy, x, s), reps);
                double t2 = Timing.Median(() => Pooling.MaxBackwardHost(dx, dy, x, s), reps);
                v1Total += t1; v2Total += t2;
                Console.WriteLine($"  {what,-36} v1   {t1 * 1e3,9:F2} ms  {bytes / t1 / 1e9,6:F1} GB/s");
                Console.WriteLine($"  {what,-36} auto {t2 * 1e3,9:F2} ms  {bytes / t2 / 1e9,6:F1} GB/s   {t1 / t2,5:F1}x");
            }
            Console.WriteLine($"  all five pools: v1 {v1Total * 1e3:F1} ms, auto {v2Total * 1e3:F1} ms ({v1Total / v2Total:F1}x)");
        }
        if (Want("relu"))
        {
            Console.WriteLine($"\nReLU backward in place, conv1_2's output {batch}x64x224² (reads dy, y; writes dx)");
            long n = (long)batch * 64 * 224 * 224;
            var y = Rand(n); var dy = Rand(n);
            Row("relu backward dx = dy", "v1", 12.0 * n, () => Activations.ReluBackwardHost_V1Naive(dy, dy, y));
            Row("relu backward dx = dy", "auto", 12.0 * n, () => Activations.ReluBackwardHost(dy, dy, y));
        }
        if (Want("avgpool"))
        {
            Console.WriteLine($"\nadaptive avg-pool backward 7x7 -> 7x7, {batch}x512 (the op copies; the kernel is the general loop)");
            long n = (long)batch * 512 * 49;
            var dy = Rand(n); var dx = new float[n];
            Row("copy (AdaptiveAvgPoolOp identity)", "op", 8.0 * n, () => dy.AsSpan().CopyTo(dx));
            Row("AdaptiveAvgBackwardHost", "v1", 8.0 * n, () => Pooling.AdaptiveAvgBackwardHost(dx, dy, batch, 512, 7, 7, 7, 7));
        }
        if (Want("dropout"))
        {
            Console.WriteLine($"\ndropout p 0.5 at fc6's output {batch}x4096 (the hash per element is the cost)");
            long n = (long)batch * 4096;
            var x = Rand(n); var y = new float[n];
            Row("dropout forward", "auto", 8.0 * n, () => Dropout.ForwardHost(y, x, 0.5f, 7));
            Row("dropout backward", "auto", 8.0 * n, () => Dropout.BackwardHost(y, x, 0.5f, 7));
        }
        if (Want("sgd") || Want("clear"))
        {
            var dev = new HostDevice();
            using var grad = dev.Allocate(Vgg16Parameters);
            var g = HostDevice.Span(grad);
            double mib = 4.0 * Vgg16Parameters / (1 << 20);
            if (Want("clear"))
            {
                Console.WriteLine($"\nclear of the gradient block, {Vgg16Parameters:N0} floats ({mib:F0} MiB; writes only)");
                var whole = HostDevice.Span(grad).ToArray().AsMemory(); // the same size, for the memset rows
                Row("Span.Clear, one thread", "v1", 4.0 * Vgg16Parameters, () => whole.Span.Clear());
                Row("Span.Clear, 4 MiB tasks in parallel", "v2", 4.0 * Vgg16Parameters, () =>
                    Parallel.For(0, (int)((whole.Length + (1 << 20) - 1) >> 20), c => whole.Span.Slice(c << 20, Math.Min(1 << 20, whole.Length - (c << 20))).Clear()));
                Row("HostDevice.Clear (streaming stores)", "auto", 4.0 * Vgg16Parameters, () => dev.Clear(grad));
            }
            if (Want("sgd"))
            {
                Console.WriteLine($"\nSGD lr 0.01 momentum 0.9 wd 5e-4 over {Vgg16Parameters:N0} parameters (reads p, g, buf; writes p, buf)");
                var p = Rand(Vgg16Parameters); var buf = new float[Vgg16Parameters];
                for (long i = 0; i < g.Length; i++) g[(int)i] = 1e-3f * p[i];
                var a = new SgdArgs(0.01f, 0.9f, 5e-4f);
                double bytes = 20.0 * Vgg16Parameters;
                Row("SgdStepHost", "v1", bytes, () => Optimizers.SgdStepHost_V1Naive(p, HostDevice.Span(grad), buf, a));
                Row("SgdStepHost", "auto", bytes, () => Optimizers.SgdStepHost(p, HostDevice.Span(grad), buf, a));
            }
        }
        Console.WriteLine("\n(timings on a shared machine are noisy; compare ratios measured in the same run)");
        return 0;
    }

    static string HostInfoText() => $"AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}";

    /// <summary>The entry points against V1 on small odd shapes with ties and NaNs, bit for bit.</summary>
    static bool Validate()
    {
        var rng = new Random(2);
        float[] Quantised(long n) { var v = new float[n]; for (long i = 0; i < n; i++) v[i] = rng.Next(50) == 0 ? float.NaN : MathF.Round(4 * rng.NextSingle() - 2); return v; }
        bool ok = true;
        void Compare(string what, float[] expected, float[] actual)
        {
            int bad = -1;
            for (int i = 0; i < expected.Length && bad < 0; i++)
                if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])) bad = i;
            ok &= bad < 0;
            Console.WriteLine(bad < 0 ? $"  validate {what,-44} ok (bit-identical)"
                                      : $"  validate {what,-44} MISMATCH at [{bad}]: V1 {expected[bad]}, fast {actual[bad]}");
        }
        {
            var s = new PoolShape(3, 5, 23, 37, 2, 2, 2, 2);
            var x = Quantised(s.InputLength); var dy = Quantised(s.OutputLength);
            var e = new float[s.InputLength]; var f = new float[s.InputLength];
            Pooling.MaxBackwardHost_V1Naive(e, dy, x, s); Pooling.MaxBackwardHost(f, dy, x, s);
            Compare("max-pool backward 3x5x23x37, 2x2/2", e, f);
        }
        {
            var y = Quantised(100_003); var dy = Quantised(100_003);
            var e = new float[y.Length]; var f = new float[y.Length];
            Activations.ReluBackwardHost_V1Naive(e, dy, y); Activations.ReluBackwardHost(f, dy, y);
            Compare("relu backward 100003", e, f);
        }
        {
            var g = Quantised(200_007); var p1 = Quantised(200_007); var p2 = (float[])p1.Clone();
            var b1 = Quantised(200_007); var b2 = (float[])b1.Clone();
            var a = new SgdArgs(0.01f, 0.9f, 5e-4f);
            Optimizers.SgdStepHost_V1Naive(p1, g, b1, a); Optimizers.SgdStepHost(p2, g, b2, a);
            Compare("sgd step 200007 (parameters)", p1, p2);
            Compare("sgd step 200007 (momentum buffer)", b1, b2);
        }
        return ok;
    }
}
