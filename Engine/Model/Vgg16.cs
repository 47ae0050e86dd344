using Tp7.Engine.Devices;
using Tp7.Engine.Graph;

namespace Tp7.Engine.Model;

/// <summary>
/// torchvision's VGG16 on a <see cref="ComputeDevice"/>: <see cref="Vgg16Graph"/> on the executor, parameters in one
/// block. A forward pass stops at the last requested tap and returns every requested tap on the host.
/// </summary>
public sealed class Vgg16 : IDisposable
{
    public Network Network { get; }
    public ComputeDevice Device => Network.Device;
    public string WeightsSource { get; }
    public long WeightBytes => Network.ParameterBytes;
    /// <summary>Rows of classifier.6 (1,000 for ImageNet weights).</summary>
    public int NumClasses { get; }
    /// <summary>When set, each launch is synchronised and timed into this profiler.</summary>
    public LayerProfiler? Profiler { get => Network.Profiler; set => Network.Profiler = value; }
    /// <summary>Receives one-line notes (e.g. a batch split to fit memory).</summary>
    public Action<string>? Log { get => Network.Log; set => Network.Log = value; }

    public Vgg16(ComputeDevice device, Vgg16Weights weights)
    {
        NumClasses = weights.NumClasses;
        Network = new Network(device, Vgg16Graph.Build(NumClasses));
        WeightsSource = weights.Source;
        try
        {
            foreach (var e in Network.Parameters.Entries) Network.Parameters.Write(e.Name, weights[e.Name]);
        }
        catch
        {
            Network.Dispose();
            throw;
        }
    }

    /// <summary>The largest batch whose activations fit beside the weights (keeping 10 % of memory spare).</summary>
    public int MaxBatchThatFits(int height, int width, string lastTap)
        => Network.MaxBatchThatFits(new Shape(1, 3, height, width), [lastTap]);

    /// <summary>
    /// Runs images (N, 3, H, W) through the network up to the last of <paramref name="taps"/> and returns each tap
    /// as a host array (N, per-sample elements) in NCHW order.
    /// </summary>
    public Dictionary<string, float[]> Forward(ReadOnlySpan<float> input, int n, int height, int width, IReadOnlyCollection<string> taps)
    {
        Vgg16Architecture.OutputShapes(height, width); // a clear error for inputs below 32x32
        foreach (var t in taps) Vgg16Architecture.Layer(t);
        return Network.Forward(input, new Shape(n, 3, height, width), taps);
    }

    /// <summary>Softmax probabilities (N, classes) of logits (N, classes), computed on the device.</summary>
    public float[] Softmax(float[] logits, int n)
    {
        int cols = logits.Length / n;
        if (softmax == null)
        {
            // A one-node network, made once: its plans and arena are reused by every later call.
            var g = new Graph.Graph();
            g.Inputs["logits"] = new Shape(1, cols);
            g.Nodes.Add(new Node("softmax", "Softmax", ["logits"], ["probabilities"], new Attributes()));
            g.Output = "probabilities";
            softmax = new Network(Device, g);
        }
        return softmax.Forward(logits, new Shape(n, cols), ["probabilities"])["probabilities"];
    }

    Network? softmax;

    public void Dispose()
    {
        softmax?.Dispose();
        Network.Dispose();
    }
}
