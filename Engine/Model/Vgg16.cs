using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Model;

/// <summary>
/// VGG16 inference on a <see cref="ComputeDevice"/>. A forward pass stops at the last requested tap and returns
/// every requested tap on the host. Activations live in two ping-pong buffers planned once for a batch size and
/// reused across batches; a batch that does not fit the device's memory is split (and the split is reported).
/// </summary>
public sealed class Vgg16 : IDisposable
{
    readonly Dictionary<string, DeviceTensor> parameters = [];
    DeviceTensor? bufferA, bufferB;
    long bufferElements;

    public ComputeDevice Device { get; }
    public string WeightsSource { get; }
    public long WeightBytes { get; }
    /// <summary>When set, each layer is synchronised and timed into this profiler.</summary>
    public LayerProfiler? Profiler { get; set; }
    /// <summary>Receives one-line notes (e.g. a batch split to fit memory).</summary>
    public Action<string>? Log { get; set; }

    public Vgg16(ComputeDevice device, Vgg16Weights weights)
    {
        Device = device;
        WeightsSource = weights.Source;
        foreach (var (key, _) in Vgg16Architecture.ParameterSpecs)
        {
            var host = weights[key];
            parameters[key] = device.Upload(host);
            WeightBytes += 4L * host.Length;
        }
    }

    /// <summary>Bytes of activation memory one forward pass of <paramref name="batch"/> images needs up to a tap.</summary>
    public static long ActivationBytes(int batch, int height, int width, string lastTap)
        => 2 * 4 * batch * MaxElementsPerSample(height, width, Vgg16Architecture.Layer(lastTap).Position);

    static long MaxElementsPerSample(int height, int width, int lastPosition)
    {
        var shapes = Vgg16Architecture.OutputShapes(height, width);
        long max = 3L * height * width;
        for (int i = 0; i <= lastPosition; i++) max = Math.Max(max, shapes[i].Elements);
        return max;
    }

    /// <summary>The largest batch whose activations fit beside the weights (keeping 10 % of memory spare).</summary>
    public int MaxBatchThatFits(int height, int width, string lastTap)
    {
        long free = (long)(Device.MemoryBytes * 0.9) - WeightBytes;
        long perImage = ActivationBytes(1, height, width, lastTap) + 4L * 3 * height * width;
        return (int)Math.Clamp(free / Math.Max(1, perImage), 0, int.MaxValue);
    }

    /// <summary>
    /// Runs images (N, 3, H, W) through the network up to the last of <paramref name="taps"/> and returns each tap
    /// as a host array (N, per-sample elements) in NCHW order.
    /// </summary>
    public Dictionary<string, float[]> Forward(ReadOnlySpan<float> input, int n, int height, int width, IReadOnlyCollection<string> taps)
    {
        Check.Length("input", input.Length, 3L * n * height * width, $"(N={n}, 3, {height}, {width})");
        if (taps.Count == 0) throw new ArgumentException("no layer requested");
        var wanted = taps.Select(t => Vgg16Architecture.Layer(t).Tap).ToHashSet();
        int last = wanted.Max(t => Vgg16Architecture.Layer(t).Position);
        var shapes = Vgg16Architecture.OutputShapes(height, width);

        int chunk = n;
        int fits = MaxBatchThatFits(height, width, Vgg16Architecture.Layers[last].Tap);
        if (fits < 1) throw new InsufficientMemoryException(
            $"{Device.Name}: one {height}x{width} image needs {ActivationBytes(1, height, width, Vgg16Architecture.Layers[last].Tap) >> 20} MiB of activations beside {WeightBytes >> 20} MiB of weights; the device has {Device.MemoryBytes >> 20} MiB");
        if (fits < n)
        {
            chunk = fits;
            Log?.Invoke($"batch of {n} does not fit {Device.Name} ({Device.MemoryBytes >> 20} MiB): running it as chunks of {chunk}");
        }

        var results = wanted.ToDictionary(t => t, t => new float[n * shapes[Vgg16Architecture.Layer(t).Position].Elements]);
        for (int start = 0; start < n; start += chunk)
        {
            int count = Math.Min(chunk, n - start);
            long per = 3L * height * width;
            RunChunk(input.Slice((int)(start * per), (int)(count * per)), count, height, width, wanted, last, shapes, results, start);
        }
        return results;
    }

    void RunChunk(ReadOnlySpan<float> input, int n, int height, int width, HashSet<string> wanted, int last,
        ActShape[] shapes, Dictionary<string, float[]> results, int sampleOffset)
    {
        EnsureBuffers(n * MaxElementsPerSample(height, width, last));
        var cur = bufferA!;
        var other = bufferB!;
        var inShape = new ActShape(3, height, width);
        Device.Upload(cur.Prefix(n * inShape.Elements), input);

        var layers = Vgg16Architecture.Layers;
        for (int i = 0; i <= last; i++)
        {
            var l = layers[i];
            var outShape = shapes[i];
            long outLen = n * outShape.Elements, inLen = n * inShape.Elements;
            long t0 = Profiler != null ? LayerProfiler.Now() : 0;
            string op = l.Kind.ToString();
            double flops = 0, bytes = 0;
            bool fusedRelu = false;
            switch (l.Kind)
            {
                case LayerKind.Conv:
                {
                    // The ReLU that follows rides in the convolution's epilogue unless the pre-ReLU tap is wanted.
                    fusedRelu = i + 1 <= last && layers[i + 1].Kind == LayerKind.Relu && !wanted.Contains(l.Tap);
                    var s = Vgg16Architecture.ConvShapeOf(l, n, inShape.H, inShape.W);
                    Device.Conv2d(other.Prefix(outLen), cur.Prefix(inLen), parameters[l.WeightKey!], parameters[l.BiasKey!], s, fusedRelu);
                    (cur, other) = (other, cur);
                    flops = s.ForwardFlops; bytes = s.ForwardBytes;
                    op = fusedRelu ? "conv+relu" : "conv";
                    break;
                }
                case LayerKind.Linear:
                {
                    fusedRelu = i + 1 <= last && layers[i + 1].Kind == LayerKind.Relu && !wanted.Contains(l.Tap);
                    Device.Linear(other.Prefix(outLen), cur.Prefix(inLen), parameters[l.WeightKey!], parameters[l.BiasKey!],
                        n, l.InFeatures, l.OutFeatures, fusedRelu);
                    (cur, other) = (other, cur);
                    flops = 2.0 * n * l.InFeatures * l.OutFeatures; bytes = 4.0 * ((long)l.InFeatures * l.OutFeatures + inLen + outLen);
                    op = fusedRelu ? "linear+relu" : "linear";
                    break;
                }
                case LayerKind.Relu:
                    Device.Relu(cur.Prefix(outLen), cur.Prefix(inLen));
                    flops = outLen; bytes = 8.0 * outLen;
                    break;
                case LayerKind.MaxPool:
                {
                    var s = new PoolShape(n, inShape.C, inShape.H, inShape.W, l.Kernel, l.Kernel, l.Stride, l.Stride);
                    Device.MaxPool(other.Prefix(outLen), cur.Prefix(inLen), s);
                    (cur, other) = (other, cur);
                    flops = s.Flops; bytes = s.Bytes;
                    break;
                }
                case LayerKind.AdaptiveAvgPool:
                    if (inShape.H != outShape.H || inShape.W != outShape.W)
                    {
                        Device.AdaptiveAvgPool(other.Prefix(outLen), cur.Prefix(inLen), n, inShape.C, inShape.H, inShape.W, outShape.H, outShape.W);
                        (cur, other) = (other, cur);
                        bytes = 4.0 * (inLen + outLen);
                    }
                    else op = "identity";
                    break;
                default: // flatten and dropout (inference) are identities on a contiguous NCHW buffer
                    op = "identity";
                    break;
            }
            if (Profiler != null && op != "identity")
            {
                Device.Synchronize();
                Profiler.Record(l.Tap, op, $"{n}x{outShape}", flops, bytes, LayerProfiler.Since(t0));
            }

            if (fusedRelu)
            {
                // The next layer (the ReLU) is done; it still answers its own tap.
                i++;
                inShape = outShape;
                Collect(layers[i].Tap, cur, outLen, wanted, results, sampleOffset, outShape);
                continue;
            }
            Collect(l.Tap, cur, outLen, wanted, results, sampleOffset, outShape);
            inShape = outShape;
        }
    }

    void Collect(string tap, DeviceTensor cur, long length, HashSet<string> wanted, Dictionary<string, float[]> results,
        int sampleOffset, ActShape shape)
    {
        if (!wanted.Contains(tap)) return;
        Device.Download(cur.Prefix(length), results[tap].AsSpan((int)(sampleOffset * shape.Elements), (int)length));
    }

    void EnsureBuffers(long elements)
    {
        if (elements <= bufferElements) return;
        bufferA?.Dispose(); bufferB?.Dispose();
        bufferA = bufferB = null;
        bufferA = Device.Allocate(elements);
        bufferB = Device.Allocate(elements);
        bufferElements = elements;
    }

    /// <summary>Softmax probabilities (N, 1000) of logits (N, 1000), computed on the device.</summary>
    public float[] Softmax(float[] logits, int n)
    {
        using var x = Device.Upload(logits);
        using var y = Device.Allocate(logits.Length);
        Device.Softmax(y, x, n, logits.Length / n);
        return Device.Download(y);
    }

    public void Dispose()
    {
        foreach (var t in parameters.Values) t.Dispose();
        parameters.Clear();
        bufferA?.Dispose(); bufferB?.Dispose();
        bufferA = bufferB = null;
    }
}
