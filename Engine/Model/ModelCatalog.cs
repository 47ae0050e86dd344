using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Onnx;

namespace Tp7.Engine.Model;

/// <summary>
/// The networks `--model` names: vgg16 (torchvision's layout, weights from safetensors), resnet18 (ImageNet-trained,
/// from the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 that a restore brings, with its preprocessing
/// graph) and any .onnx file.
/// </summary>
public static class ModelCatalog
{
    public const string ResNet18Package = "microsoft.ml.dnnimagefeaturizer.resnet18";
    public const string ResNet18Version = "0.23.1";
    public const string ResNet18File = "tools/DnnImageModels/ResNet18Onnx/ResNet18.onnx";
    public const string ResNet18PreprocessFile = "tools/DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx";
    public const string ResNet18Provenance =
        "ResNet18 trained on ImageNet (ILSVRC-2012) by Microsoft, exported from CNTK to ONNX and shipped in the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (MIT)";

    /// <summary>What ResNet18's preprocessing graph takes: planar RGB in 0..255 at 224 x 224 (it reorders to BGR and subtracts a mean image).</summary>
    public static Preprocessing ResNet18Preprocessing { get; } = new() { Size = 224, Range = 255f, Mean = [0f, 0f, 0f], Std = [1f, 1f, 1f] };

    /// <summary>"vgg16", "resnet18", or a path ending in .onnx (which must exist); anything else is refused naming the option.</summary>
    public static string Check(string model)
    {
        if (model is "vgg16" or "resnet18") return model;
        if (model.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            if (!File.Exists(model)) throw new FileNotFoundException($"--model: {model}: no such ONNX file");
            return model;
        }
        throw new ArgumentException($"--model: '{model}' is not vgg16, resnet18 or a path to an .onnx file");
    }

    /// <summary>The two ONNX files of ResNet18 (network, preprocessing), or an error that says how to get them.</summary>
    public static (string Network, string Preprocess) FindResNet18()
    {
        string? net = NuGetPackages.FindFile(ResNet18Package, ResNet18Version, ResNet18File);
        string? pre = NuGetPackages.FindFile(ResNet18Package, ResNet18Version, ResNet18PreprocessFile);
        if (net == null || pre == null)
            throw new FileNotFoundException($"--model resnet18: the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 {ResNet18Version} is not in {NuGetPackages.GlobalPackagesFolder}; " +
                                            "run `dotnet restore` in the repository (Engine/Engine.csproj downloads it)");
        return (net, pre);
    }

    public static bool ResNet18Available()
        => NuGetPackages.FindFile(ResNet18Package, ResNet18Version, ResNet18File) != null && NuGetPackages.FindFile(ResNet18Package, ResNet18Version, ResNet18PreprocessFile) != null;

    /// <summary>ResNet18's network behind its preprocessing graph, both imported onto one graph.</summary>
    public static ImportedModel ImportResNet18()
    {
        var (net, pre) = FindResNet18();
        var composed = OnnxImporter.Compose(OnnxImporter.Load(pre), OnnxImporter.Load(net));
        // Taps with names users know; the values keep CNTK's names.
        var g = composed.Graph;
        g.Aliases.Insert(0, ("pool5", g.Output));
        return composed;
    }

    /// <summary>
    /// The preprocessing a model's inputs get unless the command line says otherwise: ResNet18's package input (its
    /// graph does the rest); for other ONNX files torchvision's ImageNet normalisation at the file's input size.
    /// </summary>
    public static Preprocessing DefaultPreprocessing(string model, ImportedModel imported)
    {
        if (model == "resnet18") return ResNet18Preprocessing;
        var input = imported.Graph.Inputs.Values.Single();
        return Preprocessing.ImageNet with { Size = input.Rank == 4 && input[2] == input[3] ? input[2] : 224 };
    }

    /// <summary>The graph and weights of an ONNX model by its --model name (resnet18 or an .onnx path).</summary>
    public static ImportedModel Import(string model) => model == "resnet18" ? ImportResNet18() : OnnxImporter.Load(model);

    /// <summary>The name a model goes by in reports: resnet18, or the ONNX file's name.</summary>
    public static string NameOf(string model) => model == "resnet18" ? "resnet18" : Path.GetFileName(model);

    /// <summary>The files an ONNX model by its --model name is read from (ResNet18: network and preprocessing graph).</summary>
    public static string[] Files(string model)
    {
        if (model != "resnet18") return [model];
        var (net, pre) = FindResNet18();
        return [net, pre];
    }

    /// <summary>
    /// What keys the feature cache for a model: the SHA-256 of its one file, or, for several files or a preprocessing
    /// other than the model's default, the SHA-256 of their hashes with the preprocessing.
    /// </summary>
    public static string Identity(IReadOnlyList<string> files, Preprocessing preprocessing, bool customPreprocessing)
    {
        var hashes = string.Join("+", files.Select(Features.FeatureCache.HashFile));
        if (files.Count == 1 && !customPreprocessing) return hashes;
        var bytes = System.Text.Encoding.UTF8.GetBytes(hashes + "|" + preprocessing.Describe());
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes)).ToLowerInvariant();
    }

    /// <summary>Opens a model by its --model name (resnet18 or an .onnx path) on a device.</summary>
    public static ImageModel OpenOnnx(ComputeDevice device, string model, Preprocessing? preprocessing = null)
    {
        var imported = Import(model);
        return new ImageModel(device, imported, NameOf(model), preprocessing ?? DefaultPreprocessing(model, imported));
    }
}
