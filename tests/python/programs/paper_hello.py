from charmpy import *

class MyChare(Chare):
    def SayHi(self, msg):
        print(msg)
        charm.exit()

def main(args):
    proxy = Chare(MyChare, onPE=-1)
    proxy.SayHi('Hello')

charm.start(main)
