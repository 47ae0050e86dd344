namespace Tp7.Engine;
internal static class EngineInfo { public const string Name = "Tp7.Native"; }
