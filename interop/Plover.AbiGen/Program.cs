using Plover.AbiGen;

// plover-abigen HEADER OUTDIR: writes OUTDIR/PloverAbi.g.cs and OUTDIR/AbiLayout.g.cs from HEADER.
// A file is rewritten only when its text changes, so that an unchanged header does not recompile its users.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Plover.AbiGen HEADER OUTDIR");
    return 2;
}
try
{
    HeaderModel model = new HeaderReader(args[0]).Read();
    Directory.CreateDirectory(args[1]);
    Write(Path.Combine(args[1], "PloverAbi.g.cs"), CSharpWriter.Mirror(model));
    Write(Path.Combine(args[1], "AbiLayout.g.cs"), CSharpWriter.Layout(model));
    Console.WriteLine($"Plover.AbiGen: {args[0]}: {model.Structs.Count} structs, {model.Constants.Count} constants, " +
                      $"{model.Enums.Count} enums, {model.FunctionPointers.Count} function pointer types");
    return 0;
}
catch (Exception e) when (e is InvalidDataException or InvalidOperationException or DllNotFoundException)
{
    Console.Error.WriteLine($"Plover.AbiGen: error: {e.Message}");
    return 1;
}

static void Write(string path, string text)
{
    if (!File.Exists(path) || File.ReadAllText(path) != text)
        File.WriteAllText(path, text);
}
