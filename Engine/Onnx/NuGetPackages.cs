namespace Tp7.Engine.Onnx;

/// <summary>
/// Files inside packages of NuGet's global packages folder: the folder named by NUGET_PACKAGES when set, else
/// ~/.nuget/packages (NuGet's own rule). Packages are laid out as &lt;id in lower case&gt;/&lt;version&gt;/….
/// The ONNX models that ship in ML.NET's packages are found this way by the tests and the CLI.
/// </summary>
public static class NuGetPackages
{
    /// <summary>ML.NET's ResNet18 featuriser: ResNet18 (opset 8) and its preprocessing graph, both ONNX.</summary>
    public const string ResNet18Id = "microsoft.ml.dnnimagefeaturizer.resnet18", ResNet18Version = "0.23.1";
    public const string ResNet18Model = "tools/DnnImageModels/ResNet18Onnx/ResNet18.onnx";
    public const string ResNet18Preprocess = "tools/DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx";

    public static string GlobalPackagesFolder =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder
            ? folder
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>The full path of <paramref name="relativePath"/> ('/'-separated) inside a restored package, or null
    /// when the package or the file is not there.</summary>
    public static string? FindFile(string packageId, string version, string relativePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(packageId);
        ArgumentException.ThrowIfNullOrEmpty(version);
        ArgumentException.ThrowIfNullOrEmpty(relativePath);
        string path = Path.Combine(GlobalPackagesFolder, packageId.ToLowerInvariant(), version.ToLowerInvariant(),
            relativePath.Replace('/', Path.DirectorySeparatorChar));
        return File.Exists(path) ? path : null;
    }
}
