using Tp7.Engine.Kernels;

namespace Tp7.Engine.Model;

public enum LayerKind { Conv, Relu, MaxPool, AdaptiveAvgPool, Flatten, Linear, Dropout }

/// <summary>
/// One layer of torchvision's VGG16. <see cref="Module"/> is torchvision's path ("features.0", "avgpool",
/// "classifier.6"); <see cref="Tap"/> is the name users know from the lab and papers (conv1_1, relu1_1, pool1,
/// fc6, relu6, ...). Parameterised layers hold their state_dict keys.
/// </summary>
public sealed record LayerSpec(
    int Position, string Module, string Tap, LayerKind Kind,
    int InChannels = 0, int OutChannels = 0, int Kernel = 0, int Stride = 1, int Padding = 0,
    int InFeatures = 0, int OutFeatures = 0)
{
    public string? WeightKey => Kind is LayerKind.Conv or LayerKind.Linear ? Module + ".weight" : null;
    public string? BiasKey => Kind is LayerKind.Conv or LayerKind.Linear ? Module + ".bias" : null;
    public long[]? WeightShape => Kind switch
    {
        LayerKind.Conv => [OutChannels, InChannels, Kernel, Kernel],
        LayerKind.Linear => [OutFeatures, InFeatures],
        _ => null,
    };
    public long[]? BiasShape => Kind switch
    {
        LayerKind.Conv => [OutChannels],
        LayerKind.Linear => [OutFeatures],
        _ => null,
    };
    public long Parameters => Kind switch
    {
        LayerKind.Conv => (long)OutChannels * InChannels * Kernel * Kernel + OutChannels,
        LayerKind.Linear => (long)OutFeatures * InFeatures + OutFeatures,
        _ => 0,
    };
}

/// <summary>Per-sample activation shape (C, H, W); fully connected outputs are (F, 1, 1).</summary>
public readonly record struct ActShape(int C, int H, int W)
{
    public long Elements => (long)C * H * W;
    public override string ToString() => H == 1 && W == 1 && C > 0 ? $"[{C}]" : $"[{C}, {H}, {W}]";
}

/// <summary>
/// torchvision's VGG16 (configuration "D"), the single table that maps torchvision indices to tap names.
/// Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.
/// </summary>
public static class Vgg16Architecture
{
    public const int NumClasses = 1000;
    public const int PooledSize = 7;   // AdaptiveAvgPool2d((7, 7))
    public const long TotalParameters = 138_357_544;
    /// <summary>The smallest input side: five 2x2 max-poolings halve it to 1 (PyTorch refuses smaller inputs too).</summary>
    public const int MinInputSize = 32;

    /// <summary>The refusal of an input side below <see cref="MinInputSize"/>, in the CLI's words.</summary>
    public static string SizeTooSmall(int size)
        => $"--size {size}: VGG16 needs at least {MinInputSize} (its five 2x2 max-poolings halve the input to 1 pixel at 32)";

    public static IReadOnlyList<LayerSpec> Layers { get; } = Build();

    /// <summary>The 32 parameter tensors with their shapes, in state_dict order.</summary>
    public static IReadOnlyList<(string Key, long[] Shape)> ParameterSpecs { get; } =
        Layers.Where(l => l.WeightKey != null)
              .SelectMany(l => new[] { (l.WeightKey!, l.WeightShape!), (l.BiasKey!, l.BiasShape!) })
              .ToList();

    /// <summary>The parameter tensors of VGG16 with a head (classifier.6) of <paramref name="numClasses"/> rows.</summary>
    public static IReadOnlyList<(string Key, long[] Shape)> ParameterSpecsFor(int numClasses)
        => numClasses == NumClasses ? ParameterSpecs
            : ParameterSpecs.Select(p => p.Key switch
            {
                HeadWeight => (p.Key, new long[] { numClasses, p.Shape[1] }),
                HeadBias => (p.Key, new long[] { numClasses }),
                _ => p,
            }).ToList();

    public const string HeadWeight = "classifier.6.weight", HeadBias = "classifier.6.bias";

    /// <summary>Tap names users may extract features at, in forward order.</summary>
    public static IReadOnlyList<string> TapNames { get; } = Layers.Select(l => l.Tap).ToList();

    public static readonly string[] FeatureLayers = ["pool5", "fc6", "relu6", "fc7", "relu7", "fc8"];

    public static LayerSpec Layer(string tap)
        => Layers.FirstOrDefault(l => string.Equals(l.Tap, tap, StringComparison.OrdinalIgnoreCase))
           ?? Layers.FirstOrDefault(l => l.Module == tap)
           ?? throw new ArgumentException(
               $"unknown layer '{tap}'; known: {string.Join(", ", TapNames.Where(t => !t.StartsWith("drop") && t != "flatten"))}");

    static List<LayerSpec> Build()
    {
        // Channels per block and convolutions per block of configuration D.
        int[] widths = [64, 128, 256, 512, 512];
        int[] convs = [2, 2, 3, 3, 3];
        var layers = new List<LayerSpec>();
        int index = 0, inC = 3;
        for (int block = 0; block < 5; block++)
        {
            for (int j = 1; j <= convs[block]; j++)
            {
                string suffix = $"{block + 1}_{j}";
                layers.Add(new(layers.Count, $"features.{index++}", "conv" + suffix, LayerKind.Conv,
                    InChannels: inC, OutChannels: widths[block], Kernel: 3, Stride: 1, Padding: 1));
                layers.Add(new(layers.Count, $"features.{index++}", "relu" + suffix, LayerKind.Relu));
                inC = widths[block];
            }
            layers.Add(new(layers.Count, $"features.{index++}", $"pool{block + 1}", LayerKind.MaxPool, Kernel: 2, Stride: 2));
        }
        layers.Add(new(layers.Count, "avgpool", "avgpool", LayerKind.AdaptiveAvgPool));
        layers.Add(new(layers.Count, "flatten", "flatten", LayerKind.Flatten));
        int inF = 512 * PooledSize * PooledSize;
        (string fc, string relu, string drop, int outF)[] head =
            [("fc6", "relu6", "drop6", 4096), ("fc7", "relu7", "drop7", 4096)];
        int ci = 0;
        foreach (var (fc, relu, drop, outF) in head)
        {
            layers.Add(new(layers.Count, $"classifier.{ci++}", fc, LayerKind.Linear, InFeatures: inF, OutFeatures: outF));
            layers.Add(new(layers.Count, $"classifier.{ci++}", relu, LayerKind.Relu));
            layers.Add(new(layers.Count, $"classifier.{ci++}", drop, LayerKind.Dropout));
            inF = outF;
        }
        layers.Add(new(layers.Count, $"classifier.{ci}", "fc8", LayerKind.Linear, InFeatures: inF, OutFeatures: NumClasses));
        return layers;
    }

    /// <summary>Output shape of every layer for an input of (3, height, width).</summary>
    public static ActShape[] OutputShapes(int height, int width)
    {
        var shapes = new ActShape[Layers.Count];
        var s = new ActShape(3, height, width);
        foreach (var l in Layers)
        {
            s = l.Kind switch
            {
                LayerKind.Conv => ConvShapeOf(l, 1, s.H, s.W) is var c ? new ActShape(l.OutChannels, c.OutH, c.OutW) : s,
                LayerKind.MaxPool => new PoolShape(1, s.C, s.H, s.W, l.Kernel, l.Kernel, l.Stride, l.Stride) is var p ? new ActShape(s.C, p.OutH, p.OutW) : s,
                LayerKind.AdaptiveAvgPool => new ActShape(s.C, PooledSize, PooledSize),
                LayerKind.Flatten => new ActShape((int)s.Elements, 1, 1),
                LayerKind.Linear => new ActShape(l.OutFeatures, 1, 1),
                _ => s,
            };
            if (s.H < 1 || s.W < 1)
                throw new ArgumentException($"input {height}x{width} is too small for VGG16: {l.Tap} would have size {s.H}x{s.W} (need at least 32x32)");
            shapes[l.Position] = s;
        }
        return shapes;
    }

    /// <summary>Multiply-adds of one layer for one sample, given its input and output shapes.</summary>
    public static double MultiplyAdds(LayerSpec l, ActShape input, ActShape output) => l.Kind switch
    {
        LayerKind.Conv => ConvShapeOf(l, 1, input.H, input.W).ForwardFlops / 2,
        LayerKind.Linear => (double)l.InFeatures * l.OutFeatures,
        _ => 0,
    };

    /// <summary>Convolution shape of a conv layer at batch n and input (h, w).</summary>
    public static ConvShape ConvShapeOf(LayerSpec l, int n, int h, int w)
        => ConvShape.Square(n, l.InChannels, h, w, l.OutChannels, l.Kernel, l.Stride, l.Padding);
}
