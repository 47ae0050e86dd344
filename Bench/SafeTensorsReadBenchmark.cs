using System.Diagnostics;
using Tp7.Engine.IO;

namespace Tp7.Bench;

/// <summary>
/// Writes a float32 safetensors file with VGG16's 32 parameter shapes (138 M values, 528 MiB), checks it reads
/// back bit for bit, then times reading every tensor: into new arrays (what model loading does) and into one
/// reused buffer (pure I/O). The file was just written, so this measures reads from the page cache.
/// Usage: safetensors-read [directory for the temporary file, default: system temp]
/// </summary>
public sealed class SafeTensorsReadBenchmark : IBenchmark
{
    public string Name => "safetensors-read";
    public string Description => "write + read a VGG16-sized (528 MiB) F32 safetensors file, MB/s";

    private static readonly (string Key, long[] Shape)[] Vgg16 =
    [
        ("features.0.weight", [64, 3, 3, 3]), ("features.0.bias", [64]),
        ("features.2.weight", [64, 64, 3, 3]), ("features.2.bias", [64]),
        ("features.5.weight", [128, 64, 3, 3]), ("features.5.bias", [128]),
        ("features.7.weight", [128, 128, 3, 3]), ("features.7.bias", [128]),
        ("features.10.weight", [256, 128, 3, 3]), ("features.10.bias", [256]),
        ("features.12.weight", [256, 256, 3, 3]), ("features.12.bias", [256]),
        ("features.14.weight", [256, 256, 3, 3]), ("features.14.bias", [256]),
        ("features.17.weight", [512, 256, 3, 3]), ("features.17.bias", [512]),
        ("features.19.weight", [512, 512, 3, 3]), ("features.19.bias", [512]),
        ("features.21.weight", [512, 512, 3, 3]), ("features.21.bias", [512]),
        ("features.24.weight", [512, 512, 3, 3]), ("features.24.bias", [512]),
        ("features.26.weight", [512, 512, 3, 3]), ("features.26.bias", [512]),
        ("features.28.weight", [512, 512, 3, 3]), ("features.28.bias", [512]),
        ("classifier.0.weight", [4096, 25088]), ("classifier.0.bias", [4096]),
        ("classifier.3.weight", [4096, 4096]), ("classifier.3.bias", [4096]),
        ("classifier.6.weight", [1000, 4096]), ("classifier.6.bias", [1000]),
    ];

    /// <summary>F16 and BF16 reads from an in-memory image (32 M values), against a scalar BCL loop in the same run.</summary>
    private static void ConvertedReads(Span<float> destination)
    {
        int n = destination.Length;
        var bits = new ushort[n];
        var rng = new Random(2);
        for (int i = 0; i < n; i++) bits[i] = (ushort)(rng.Next(0x7C00) | (i & 1) << 15); // finite halves, both signs
        byte[] data = System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
        var scalar = new float[n];
        foreach (string dtype in new[] { "F16", "BF16" })
        {
            string header = $"{{\"t\":{{\"dtype\":\"{dtype}\",\"shape\":[{n}],\"data_offsets\":[0,{2L * n}]}}}}";
            byte[] json = System.Text.Encoding.UTF8.GetBytes(header);
            byte[] image = new byte[8 + json.Length + data.Length];
            BitConverter.GetBytes((ulong)json.Length).CopyTo(image, 0);
            json.CopyTo(image, 8);
            data.CopyTo(image, 8 + json.Length);
            using var file = SafeTensorsFile.Open(image, dtype);
            var dst = new float[n];
            double vecS = Timing.Median(() => file.ReadFloat32("t", dst), reps: 5);
            double refS = Timing.Median(() =>
            {
                for (int i = 0; i < n; i++)
                    scalar[i] = dtype == "F16" ? (float)BitConverter.UInt16BitsToHalf(bits[i]) : BitConverter.UInt32BitsToSingle((uint)bits[i] << 16);
            }, reps: 5);
            for (int i = 0; i < n; i++)
                if (BitConverter.SingleToInt32Bits(dst[i]) != BitConverter.SingleToInt32Bits(scalar[i]))
                    throw new InvalidOperationException($"{dtype} conversion differs at {i}");
            Console.WriteLine($"read {dtype} → float32 (memory): {n * 2 / 1e6 / vecS:F0} MB/s of {dtype} in, " +
                              $"{n / 1e6 / vecS:F0} M values/s; scalar BCL loop {n / 1e6 / refS:F0} M values/s ({refS / vecS:F1}x)");
        }
    }

    public int Run(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : Path.GetTempPath();
        string path = Path.Combine(dir, $"tp7-bench-{Environment.ProcessId}.safetensors");
        static long Count(long[] s) => s.Aggregate(1L, (a, d) => a * d);
        long total = Vgg16.Sum(t => Count(t.Shape));
        double mb = total * 4 / 1e6;

        // One buffer as large as the largest tensor backs every tensor's data, so writing needs 411 MB, not 553.
        var buffer = new float[Vgg16.Max(t => Count(t.Shape))];
        var rng = new Random(1);
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (float)rng.NextDouble() - 0.5f;
        try
        {
            long t0 = Stopwatch.GetTimestamp();
            SafeTensorsWriter.Write(path, Vgg16.Select(t => (t.Key, t.Shape, (ReadOnlyMemory<float>)buffer.AsMemory(0, (int)Count(t.Shape)))));
            double writeS = Stopwatch.GetElapsedTime(t0).TotalSeconds;

            using var file = SafeTensorsFile.Open(path);
            TensorSpecCheck.Verify(file, Vgg16);
            var check = file.ReadFloat32("classifier.3.weight");
            for (int i = 0; i < check.Length; i++)
                if (BitConverter.SingleToInt32Bits(check[i]) != BitConverter.SingleToInt32Bits(buffer[i]))
                    throw new InvalidOperationException($"read-back mismatch at classifier.3.weight[{i}]");

            double allocS = Timing.Median(() =>
            {
                foreach (var t in file.Tensors) GC.KeepAlive(file.ReadFloat32(t.Key));
            }, reps: 3);
            double spanS = Timing.Median(() =>
            {
                foreach (var t in file.Tensors) file.ReadFloat32(t.Key, buffer.AsSpan(0, (int)t.ElementCount));
            }, reps: 3);
            double openS = Timing.Median(() => { using var f = SafeTensorsFile.Open(path); }, reps: 5);

            Console.WriteLine($"file: {path} ({new FileInfo(path).Length / 1048576.0:F0} MiB, {file.Tensors.Count} tensors, {total:N0} float32)");
            Console.WriteLine($"write (incl. flush to disk): {writeS:F2} s = {mb / writeS:F0} MB/s");
            Console.WriteLine($"open + validate header:      {openS * 1e3:F2} ms");
            Console.WriteLine($"read all, new arrays:        {allocS:F3} s = {mb / allocS:F0} MB/s (median of 3, page cache warm)");
            Console.WriteLine($"read all, reused buffer:     {spanS:F3} s = {mb / spanS:F0} MB/s (median of 3, page cache warm)");
            ConvertedReads(buffer.AsSpan(0, 32 << 20));
            return 0;
        }
        finally
        {
            File.Delete(path);
        }
    }
}
